package sim

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ringkv/ringkv/dht/memnet"
	"github.com/ringkv/ringkv/dht/ring"
	"github.com/ringkv/ringkv/dht/routing"
)

var discard = slog.New(slog.DiscardHandler)

// world is the simulated cluster of one Run.
type world struct {
	cfg      Config
	rcfg     routing.Config
	clk      *Clock
	net      *memnet.Network
	rng      *rand.Rand
	progress func(string)

	ids     []peer.ID
	routers []*routing.Router // nil once dead
	live    []int32           // indices of live nodes, any order
	livePos []int32           // index in live, or -1
	warm    map[int32]bool    // warmed askers, left out of table sizes
	truth   *ring.Ring
}

// Run simulates routing over cfg.Nodes real routers on an in-memory
// network (memnet without cloning) under a simulated clock, as the package
// documentation describes, and reports hops, success and table sizes.
// progress, if not nil, receives one line per phase and periodic counts.
func Run(ctx context.Context, cfg Config, progress func(string)) (Report, error) {
	if err := cfg.Validate(); err != nil {
		return Report{}, err
	}
	if progress == nil {
		progress = func(string) {}
	}
	start := time.Now()
	w := &world{
		cfg: cfg, rcfg: cfg.routing(), clk: NewClock(epoch),
		net:      memnet.New(memnet.Options{Clone: false}),
		rng:      rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x5eed)),
		progress: progress,
		warm:     make(map[int32]bool),
	}
	rep := Report{Nodes: cfg.Nodes, Lookups: cfg.Lookups, VNodes: cfg.VNodes, Cache: cfg.CacheSize,
		HalfLog2N: halfLog2(cfg.Nodes)}
	if err := w.build(ctx); err != nil {
		return rep, err
	}
	rep.BuildSeconds = time.Since(start).Seconds()
	progress(fmt.Sprintf("converged start: %d nodes in %.1fs, %s", cfg.Nodes, rep.BuildSeconds, heapUse()))

	calls := w.net.ProtocolCalls(routing.Protocol)
	cold, err := w.lookups(ctx, "cold", cfg.Lookups, w.randomAsker)
	if err != nil {
		return rep, err
	}
	rep.MessagesPerLookup = float64(w.net.ProtocolCalls(routing.Protocol)-calls) / float64(cfg.Lookups)
	rep.MeanHopsCold, rep.P99HopsCold = cold.mean(), cold.p99()
	progress("cold phase done, " + heapUse())
	all := cold
	if cfg.Warm {
		askers := w.warmUp(ctx)
		warm, err := w.lookups(ctx, "warm", cfg.Lookups, func() int32 { return askers[w.rng.IntN(len(askers))] })
		if err != nil {
			return rep, err
		}
		rep.MeanHopsWarm, rep.P99HopsWarm = warm.mean(), warm.p99()
		progress("warm phase done, " + heapUse())
		all.merge(warm)
	}
	rep.SuccessRate, rep.CorrectRate = all.rates()
	if cfg.Churn > 0 {
		for _, i := range w.live {
			w.routers[i].SetCacheSize(cfg.ChurnCacheSize)
		}
		churn, fails, err := w.churn(ctx)
		if err != nil {
			return rep, err
		}
		rep.ChurnLookups = churn.n
		rep.ChurnSuccessRate, rep.ChurnCorrectRate = churn.rates()
		rep.MeanHopsChurn = churn.mean()
		rep.JoinFailures = fails
	}
	rep.MeanTableSize, rep.MaxTableSize = w.tableSizes()
	rep.TableBound = w.rcfg.MaxSize(cfg.tokenCount())
	rep.Seconds = time.Since(start).Seconds()
	rep.MaxRSSBytes = maxRSS()
	w.close()
	return rep, nil
}

// quietEndpoint is a memnet endpoint without addresses: memnet routes by
// peer ID, and recording every address every router learns would keep
// memory the routers themselves bound.
type quietEndpoint struct{ *memnet.Endpoint }

func (quietEndpoint) LocalAddrs() []string       { return nil }
func (quietEndpoint) AddAddrs(peer.ID, []string) {}

// newRouter makes, starts and registers the router of node i.
func (w *world) newRouter(ctx context.Context, i int32) error {
	ep := quietEndpoint{w.net.Endpoint(w.ids[i])}
	r, err := routing.New(w.rcfg, routing.Peer{ID: w.ids[i], Capacity: 1}, ep, w.clk)
	if err != nil {
		return err
	}
	if err := r.Start(ctx); err != nil {
		return err
	}
	w.routers[i] = r
	w.livePos[i] = int32(len(w.live))
	w.live = append(w.live, i)
	return nil
}

// build makes the converged start: every node's router knows exactly its
// successor lists, predecessors and fingers, computed from one global
// sorted token array and fed through Observe, as if the ring had
// stabilized forever. Caches are off (size 0) until the warm or churn
// phase, so the cold phase measures successor lists and fingers alone.
func (w *world) build(ctx context.Context) error {
	n := w.cfg.Nodes
	w.ids = make([]peer.ID, n)
	w.routers = make([]*routing.Router, n)
	w.livePos = make([]int32, n)
	nodes := make([]ring.Node, n)
	for i := range w.ids {
		w.ids[i] = PeerID(w.cfg.Seed, i)
		nodes[i] = ring.Node{ID: w.ids[i], Capacity: 1}
	}
	for i := range n {
		if err := w.newRouter(ctx, int32(i)); err != nil {
			return err
		}
		w.routers[i].SetCacheSize(0) // cold until the warm or churn phase
	}
	g := newGlobalRing(w.ids, w.cfg.tokenCount())
	w.progress(fmt.Sprintf("global ring: %d tokens", len(g.toks)))
	w.truth = ring.New(nodes, w.cfg.VNodes)
	// Seeding is per router and independent: spread it over the cores.
	workers := runtime.GOMAXPROCS(0)
	var wg sync.WaitGroup
	for k := range workers {
		wg.Go(func() {
			var peers []routing.Peer
			for i := k; i < n; i += workers {
				peers = g.structural(int32(i), w.cfg.Successors, peers[:0], w.ids)
				w.routers[i].ObserveAll(peers)
				w.routers[i].Size() // sort them in now, not in the first lookup
			}
		})
	}
	wg.Wait()
	return ctx.Err()
}

// globalRing is the sorted token array of the converged start.
type globalRing struct {
	toks  []uint64
	owner []int32
	own   [][]uint64 // tokens of each node, ascending
}

func newGlobalRing(ids []peer.ID, count int) *globalRing {
	type entry struct {
		tok   uint64
		owner int32
	}
	g := &globalRing{own: make([][]uint64, len(ids))}
	entries := make([]entry, 0, len(ids)*count)
	for i, id := range ids {
		g.own[i] = ring.Tokens(id, count)
		for _, t := range g.own[i] {
			entries = append(entries, entry{t, int32(i)})
		}
	}
	slices.SortFunc(entries, func(a, b entry) int {
		return cmp.Or(cmp.Compare(a.tok, b.tok), cmp.Compare(ids[a.owner], ids[b.owner]))
	})
	entries = slices.CompactFunc(entries, func(a, b entry) bool { return a.tok == b.tok })
	g.toks = make([]uint64, len(entries))
	g.owner = make([]int32, len(entries))
	for i, e := range entries {
		g.toks[i], g.owner[i] = e.tok, e.owner
	}
	return g
}

// succ returns the index of the first token at or after pos.
func (g *globalRing) succ(pos uint64) int {
	i, _ := slices.BinarySearch(g.toks, pos)
	if i == len(g.toks) {
		return 0
	}
	return i
}

// structural appends to dst the peers node i keeps in a converged ring:
// r successors and the predecessor of each own token, and its fingers.
func (g *globalRing) structural(i int32, r int, dst []routing.Peer, ids []peer.ID) []routing.Peer {
	var seen []int32
	add := func(o int32) {
		if o != i && !slices.Contains(seen, o) {
			seen = append(seen, o)
			dst = append(dst, routing.Peer{ID: ids[o], Capacity: 1})
		}
	}
	n := len(g.toks)
	for _, t := range g.own[i] {
		at := g.succ(t)
		var succ []int32
		for k := 1; k < n && len(succ) < r; k++ {
			if o := g.owner[(at+k)%n]; o != i && !slices.Contains(succ, o) {
				succ = append(succ, o)
				add(o)
			}
		}
		for k := 1; k < n; k++ {
			if o := g.owner[(at-k+n)%n]; o != i {
				add(o)
				break
			}
		}
	}
	primary := g.own[i][0]
	for b := range 64 {
		add(g.owner[g.succ(primary+1<<b)])
	}
	return dst
}

// randomAsker returns a random live node.
func (w *world) randomAsker() int32 { return w.live[w.rng.IntN(len(w.live))] }

// lookups runs count lookups of random positions from askers chosen by
// asker and tallies them against the global ring.
func (w *world) lookups(ctx context.Context, phase string, count int, asker func() int32) (tally, error) {
	var t tally
	opts := routing.Options{Recursive: w.cfg.Recursive}
	step := max(count/10, 1)
	for k := range count {
		if err := ctx.Err(); err != nil {
			return t, err
		}
		a := asker()
		pos := w.rng.Uint64()
		res, err := w.routers[a].Lookup(ctx, pos, opts)
		_, owner, _ := w.truth.Successor(pos)
		t.add(res.Hops, err == nil, err == nil && res.Owner.ID == owner)
		if (k+1)%step == 0 {
			w.progress(fmt.Sprintf("%s: %d/%d lookups, mean hops %.2f, success %.4f", phase, k+1, count, t.mean(), t.successRate()))
		}
	}
	return t, nil
}

// warmUp fills the caches of WarmAskers random live nodes with random live
// peers, as gossip membership does in a daemon, and returns them.
func (w *world) warmUp(ctx context.Context) []int32 {
	k := min(w.cfg.WarmAskers, len(w.live))
	fill := min(w.cfg.CacheSize, len(w.live)-1)
	askers := make([]int32, 0, k)
	askers = append(askers, w.sample(k)...)
	for n, a := range askers {
		if ctx.Err() != nil {
			break
		}
		w.warm[a] = true
		r := w.routers[a]
		r.SetCacheSize(w.cfg.CacheSize)
		for _, o := range w.sample(fill + 1) {
			if o != a {
				r.Observe(routing.Peer{ID: w.ids[o], Capacity: 1})
			}
		}
		r.Size()
		if (n+1)%max(k/10, 1) == 0 {
			w.progress(fmt.Sprintf("warm-up: %d/%d askers observed %d peers", n+1, k, fill))
		}
	}
	return askers
}

// sample returns k distinct random live nodes.
func (w *world) sample(k int) []int32 {
	k = min(k, len(w.live))
	if 4*k > len(w.live) {
		out := make([]int32, 0, k)
		for _, j := range w.rng.Perm(len(w.live))[:k] {
			out = append(out, w.live[j])
		}
		return out
	}
	seen := make(map[int32]bool, k)
	out := make([]int32, 0, k)
	for len(out) < k {
		if i := w.live[w.rng.IntN(len(w.live))]; !seen[i] {
			seen[i] = true
			out = append(out, i)
		}
	}
	return out
}

// tableSizes returns the mean and maximum routing-table size over the live
// nodes that were not warmed.
func (w *world) tableSizes() (mean float64, maxSize int) {
	sum, n := 0, 0
	for _, i := range w.live {
		if w.warm[i] {
			continue
		}
		s := w.routers[i].Size()
		sum += s
		n++
		maxSize = max(maxSize, s)
	}
	if n == 0 {
		return 0, 0
	}
	return float64(sum) / float64(n), maxSize
}

func (w *world) close() {
	for _, r := range w.routers {
		if r != nil {
			_ = r.Close()
		}
	}
}

// heapUse describes the live heap, after a collection.
func heapUse() string {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return fmt.Sprintf("heap %d MiB", m.HeapAlloc>>20)
}

// maxRSS returns the process's peak resident set size in bytes.
func maxRSS() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Maxrss * 1024 // kilobytes on Linux
}

// tally counts lookups and their hops.
type tally struct {
	n, ok, correct int
	hops           []int // hops[h] counts successful lookups of h hops
}

func (t *tally) add(hops int, ok, correct bool) {
	t.n++
	if !ok {
		return
	}
	t.ok++
	if correct {
		t.correct++
	}
	for len(t.hops) <= hops {
		t.hops = append(t.hops, 0)
	}
	t.hops[hops]++
}

func (t *tally) merge(o tally) {
	t.n += o.n
	t.ok += o.ok
	t.correct += o.correct
	for h, c := range o.hops {
		for len(t.hops) <= h {
			t.hops = append(t.hops, 0)
		}
		t.hops[h] += c
	}
}

func (t tally) mean() float64 {
	if t.ok == 0 {
		return 0
	}
	sum := 0
	for h, c := range t.hops {
		sum += h * c
	}
	return float64(sum) / float64(t.ok)
}

// p99 is the smallest hop count that at least 99% of successful lookups
// did not exceed.
func (t tally) p99() int {
	need := (t.ok*99 + 99) / 100
	seen := 0
	for h, c := range t.hops {
		if seen += c; seen >= need {
			return h
		}
	}
	return len(t.hops) - 1
}

func (t tally) successRate() float64 {
	if t.n == 0 {
		return 0
	}
	return float64(t.ok) / float64(t.n)
}

func (t tally) rates() (success, correct float64) {
	if t.n == 0 {
		return 0, 0
	}
	return t.successRate(), float64(t.correct) / float64(t.n)
}
