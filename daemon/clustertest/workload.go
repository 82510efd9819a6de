//go:build clustertest

package clustertest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/ringkv/ringkv/daemon/client"
)

// WorkloadConfig tunes the clients.
type WorkloadConfig struct {
	// Rate is each client's operations per second. Default 10; with three
	// clients per node that is 150 ops/s on five nodes. Higher rates make
	// the final read of every key through every node slower.
	Rate float64
	// HotKeys is how many keys the concurrent-writes workload shares.
	// Default 3.
	HotKeys int
	// Timeout bounds one operation. Default 10s, above the daemon's 5s
	// request timeout, so a slow answer is still an answer.
	Timeout time.Duration
	// Cooldown is how long a client sends to another node after its node
	// failed an operation (a client-side load balancer). Default 2s.
	Cooldown time.Duration
	// Seed drives the clients' choices; Tag prefixes every key and value
	// (unique per run).
	Seed uint64
	Tag  string
}

func (c *WorkloadConfig) defaults() {
	if c.Rate <= 0 {
		c.Rate = 10
	}
	if c.HotKeys <= 0 {
		c.HotKeys = 3
	}
	if c.Timeout <= 0 {
		c.Timeout = 10 * time.Second
	}
	if c.Cooldown <= 0 {
		c.Cooldown = 2 * time.Second
	}
}

// Workload runs three clients per node, each bound to its node and
// falling back to the next nodes while its own fails, the odd-numbered
// ones over the wire protocol and the others over HTTP:
//
//	unique: writes fresh keys, and reads back a random one of them half
//	        the time;
//	hot:    writes the few hot keys without a causal context (each value
//	        unique), a quarter of the time reads first and writes with the
//	        read's context instead (which collapses siblings), and now and
//	        then deletes a hot key with the context of a read;
//	delete: writes a key, reads it, deletes it with the read's context,
//	        and reads it again.
type Workload struct {
	cfg     WorkloadConfig
	h       *History
	clients [][2]kvClient // per node, over HTTP and over the wire protocol, shared by the workers
	wg      sync.WaitGroup
}

// StartWorkload launches the clients; they run until ctx ends.
func StartWorkload(ctx context.Context, c Cluster, h *History, cfg WorkloadConfig) *Workload {
	cfg.defaults()
	w := &Workload{cfg: cfg, h: h}
	for i := 0; i < c.Size(); i++ {
		wire, err := client.NewWire(c.API(i), 1)
		if err != nil {
			panic(err) // an API address the HTTP client takes too
		}
		w.clients = append(w.clients, [2]kvClient{client.New(c.API(i), 16), wireKV{wire}})
	}
	loops := []func(*worker, context.Context){(*worker).unique, (*worker).hot, (*worker).deletes}
	for node := 0; node < c.Size(); node++ {
		for j, loop := range loops {
			id := node*len(loops) + j
			k := &worker{
				id: id, home: node, w: w,
				rng:   rand.New(rand.NewPCG(cfg.Seed, uint64(id))),
				lim:   rate.NewLimiter(rate.Limit(cfg.Rate), 1),
				avoid: make([]time.Time, c.Size()),
			}
			w.wg.Add(1)
			go func() {
				defer w.wg.Done()
				loop(k, ctx)
			}()
		}
	}
	return w
}

// Wait waits for every client to finish its last operation.
func (w *Workload) Wait() {
	w.wg.Wait()
	for _, c := range w.clients {
		c[0].Close()
		c[1].Close()
	}
}

// kvClient is what a worker sends its requests through: the HTTP client
// or the wire protocol's.
type kvClient interface {
	Put(ctx context.Context, key, value []byte, o client.WriteOptions) (client.WriteResponse, error)
	Delete(ctx context.Context, key []byte, o client.WriteOptions) (client.WriteResponse, error)
	Get(ctx context.Context, key []byte, o client.ReadOptions) (client.GetResponse, error)
	Close()
}

// wireKV answers reads over the wire protocol as the HTTP client does.
type wireKV struct{ *client.Wire }

func (w wireKV) Get(ctx context.Context, key []byte, o client.ReadOptions) (client.GetResponse, error) {
	r, err := w.Wire.Get(ctx, key, o)
	out := client.GetResponse{Key: string(key), Context: r.Context, Answered: r.Answered, Hinted: r.Hinted}
	for _, s := range r.Siblings {
		out.Siblings = append(out.Siblings, client.Sibling{Value: string(s.Value), Timestamp: time.Unix(0, s.Timestamp)})
	}
	return out, err
}

// client is the connection of worker k to node n: odd workers speak the
// wire protocol.
func (k *worker) client(n int) kvClient { return k.w.clients[n][k.id%2] }

// worker is one client.
type worker struct {
	id, home int
	w        *Workload
	rng      *rand.Rand
	lim      *rate.Limiter
	avoid    []time.Time // per node: do not send before
	seq      int
	written  []string // keys this client wrote (unique workload)
}

func (k *worker) value() string {
	k.seq++
	return fmt.Sprintf("%s-c%d-%d", k.w.cfg.Tag, k.id, k.seq)
}

// node picks where the next operation goes: the client's own node, or the
// next one not recently failed.
func (k *worker) node() int {
	now := time.Now()
	n := len(k.avoid)
	for d := 0; d < n; d++ {
		i := (k.home + d) % n
		if now.After(k.avoid[i]) {
			return i
		}
	}
	return k.home
}

func (k *worker) finish(op Op, err error) Op {
	op = k.w.h.End(op, Classify(op.Kind, err), err)
	if op.Result != ResultOK {
		k.avoid[op.Node] = time.Now().Add(k.w.cfg.Cooldown)
	}
	return op
}

func (k *worker) put(key, value string, ctxFrom int64, causal string) Op {
	n := k.node()
	op := k.w.h.Begin(Op{Client: k.id, Node: n, Kind: KindPut, Key: key, Value: value, CtxFrom: ctxFrom})
	ctx, cancel := context.WithTimeout(context.Background(), k.w.cfg.Timeout)
	defer cancel()
	resp, err := k.client(n).Put(ctx, []byte(key), []byte(value), client.WriteOptions{Context: causal})
	op.Hinted, op.Coordinator, op.Context = resp.Hinted, resp.Coordinator, resp.Context
	return k.finish(op, err)
}

func (k *worker) del(key string, ctxFrom int64, causal string) Op {
	n := k.node()
	op := k.w.h.Begin(Op{Client: k.id, Node: n, Kind: KindDelete, Key: key, CtxFrom: ctxFrom})
	ctx, cancel := context.WithTimeout(context.Background(), k.w.cfg.Timeout)
	defer cancel()
	resp, err := k.client(n).Delete(ctx, []byte(key), client.WriteOptions{Context: causal})
	op.Hinted, op.Coordinator, op.Context = resp.Hinted, resp.Coordinator, resp.Context
	return k.finish(op, err)
}

// get reads key and returns the op and the causal context it returned.
func (k *worker) get(key string) (Op, string) {
	n := k.node()
	op := k.w.h.Begin(Op{Client: k.id, Node: n, Kind: KindGet, Key: key})
	ctx, cancel := context.WithTimeout(context.Background(), k.w.cfg.Timeout)
	defer cancel()
	resp, err := k.client(n).Get(ctx, []byte(key), client.ReadOptions{})
	op.Hinted = resp.Hinted // also set on a 404
	if err == nil {
		op.Values, err = siblingValues(resp)
		op.Context = resp.Context
	}
	return k.finish(op, err), resp.Context
}

// siblingValues extracts the sorted sibling values of a read.
func siblingValues(resp client.GetResponse) ([]string, error) {
	var out []string
	for _, s := range resp.Siblings {
		b, err := s.Bytes()
		if err != nil {
			return nil, fmt.Errorf("clustertest: undecodable sibling: %w", err)
		}
		out = append(out, string(b))
	}
	slices.Sort(out)
	return out, nil
}

// wait paces the client; false once the run is over.
func (k *worker) wait(ctx context.Context) bool { return k.lim.Wait(ctx) == nil }

func (k *worker) unique(ctx context.Context) {
	for k.wait(ctx) {
		key := fmt.Sprintf("%s-u-c%d-%d", k.w.cfg.Tag, k.id, k.seq+1)
		if op := k.put(key, k.value(), 0, ""); op.Result != ResultFail {
			k.written = append(k.written, key)
		}
		if len(k.written) > 0 && k.rng.IntN(2) == 0 && k.wait(ctx) {
			k.get(k.written[k.rng.IntN(len(k.written))])
		}
	}
}

func (k *worker) hot(ctx context.Context) {
	for k.wait(ctx) {
		key := fmt.Sprintf("%s-h-%d", k.w.cfg.Tag, k.rng.IntN(k.w.cfg.HotKeys))
		r := k.rng.Float64()
		if r >= 0.30 {
			k.put(key, k.value(), 0, "")
			continue
		}
		rd, causal := k.get(key)
		if rd.Result != ResultOK || len(rd.Values) == 0 || !k.wait(ctx) {
			continue
		}
		if r < 0.25 {
			k.put(key, k.value(), rd.ID, causal)
		} else {
			k.del(key, rd.ID, causal)
		}
	}
}

func (k *worker) deletes(ctx context.Context) {
	for k.wait(ctx) {
		key := fmt.Sprintf("%s-d-c%d-%d", k.w.cfg.Tag, k.id, k.seq+1)
		if op := k.put(key, k.value(), 0, ""); op.Result == ResultFail || !k.wait(ctx) {
			continue
		}
		rd, causal := k.get(key)
		if rd.Result != ResultOK || len(rd.Values) == 0 || !k.wait(ctx) {
			continue
		}
		k.del(key, rd.ID, causal)
		if k.wait(ctx) {
			k.get(key)
		}
	}
}
