package cli

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"

	"github.com/ringkv/ringkv/daemon/client"
)

// benchConfig is what `ringkv bench` runs.
type benchConfig struct {
	op          string
	concurrency int
	ops         int
	duration    time.Duration
	valueSize   int
	keys        int
	dist        string
	zipfS       float64
	readRatio   float64
	noFill      bool
	prefix      string
	consistency string
	seed        uint64
	protocol    string
	conns       int
}

// BenchResult is the outcome of one bench run; -o json prints it.
type BenchResult struct {
	Op          string  `json:"op"`
	Concurrency int     `json:"concurrency"`
	ValueSize   int     `json:"value_size,omitempty"` // omitted for ping
	Keys        int     `json:"keys,omitempty"`
	Dist        string  `json:"dist,omitempty"`
	Protocol    string  `json:"protocol"`
	Ops         int64   `json:"ops"`
	Errors      int64   `json:"errors"`
	Misses      int64   `json:"misses"`
	Seconds     float64 `json:"seconds"`
	OpsPerSec   float64 `json:"ops_per_sec"`
	P50ms       float64 `json:"p50_ms"`
	P90ms       float64 `json:"p90_ms"`
	P99ms       float64 `json:"p99_ms"`
	P999ms      float64 `json:"p999_ms"`
	MaxMs       float64 `json:"max_ms"`
	FirstError  string  `json:"first_error,omitempty"`
}

func newBenchCmd(g *globals) *cobra.Command {
	var bc benchConfig
	c := &cobra.Command{
		Use:   "bench",
		Short: "Load the local daemon's API like redis-benchmark and print ops/s and latency percentiles",
		Example: "  ringkv bench --op put -c 50 -n 200000 --value-size 100\n" +
			"  ringkv bench --op get -c 50 --duration 30s --dist zipf\n  ringkv bench --op mixed --read-ratio 0.9 -o json\n" +
			"  ringkv bench --op ping -c 1 -n 5000",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := bc.validate(); err != nil {
				return err
			}
			if _, err := g.format(); err != nil {
				return err
			}
			cl, err := g.client(bc.concurrency)
			if err != nil {
				return err
			}
			defer cl.Close()
			kv, err := bc.newClient(cl.Addr())
			if err != nil {
				return usagef("--api %s: ringkv bench speaks plain HTTP or the wire protocol; give host:port or an http:// URL", cl.Addr())
			}
			defer kv.Close()
			contexts := newContextMap()
			if !bc.noFill && (bc.op == "get" || bc.op == "mixed") {
				if err := fill(cmd.Context(), cl, bc, contexts); err != nil {
					return explain(err)
				}
			}
			res, err := runBench(cmd.Context(), kv, bc, contexts)
			if err != nil {
				return explain(err)
			}
			return g.printBench(res)
		},
	}
	f := c.Flags()
	f.StringVar(&bc.op, "op", "get", "put, get, mixed, or ping (a round trip to the daemon that does no other work)")
	f.IntVarP(&bc.concurrency, "concurrency", "c", 50, "parallel clients (each a keep-alive connection)")
	f.IntVarP(&bc.ops, "requests", "n", 100000, "total operations (ignored with --duration)")
	f.DurationVar(&bc.duration, "duration", 0, "run for this long instead of -n operations")
	f.IntVar(&bc.valueSize, "value-size", 100, "value size in bytes")
	f.IntVar(&bc.keys, "keys", 10000, "keyspace size")
	f.StringVar(&bc.dist, "dist", "uniform", "key distribution: uniform or zipf")
	f.Float64Var(&bc.zipfS, "zipf-s", 1.1, "zipf exponent s (> 1); larger is more skewed")
	f.Float64Var(&bc.readRatio, "read-ratio", 0.5, "fraction of reads in --op mixed")
	f.BoolVar(&bc.noFill, "no-fill", false, "do not write the keyspace before a get or mixed run")
	f.StringVar(&bc.prefix, "key-prefix", "bench:", "prefix of every key")
	f.StringVar(&bc.consistency, "consistency", "", "one, quorum or all for every request (default: the cluster's W and R)")
	f.Uint64Var(&bc.seed, "seed", 1, "random seed for key choice")
	f.StringVar(&bc.protocol, "protocol", "wire", "wire (many requests in flight on each of --conns connections) or http (one connection per client)")
	f.IntVar(&bc.conns, "conns", 1, "connections with --protocol wire")
	return c
}

// newClient connects the load generator to the API at addr with the
// chosen protocol.
func (bc benchConfig) newClient(addr string) (benchClient, error) {
	if bc.protocol == "http" {
		return client.NewKV(addr, bc.concurrency)
	}
	return client.NewWire(addr, bc.conns)
}

func (bc benchConfig) validate() error {
	switch {
	case bc.op != "put" && bc.op != "get" && bc.op != "mixed" && bc.op != "ping":
		return usagef("--op %q is not put, get, mixed or ping", bc.op)
	case bc.concurrency < 1 || bc.concurrency > 10000:
		return usagef("-c must be from 1 to 10000")
	case bc.duration == 0 && bc.ops < 1:
		return usagef("-n must be positive (or give --duration)")
	case bc.duration < 0:
		return usagef("--duration must be positive")
	case bc.valueSize < 0:
		return usagef("--value-size must not be negative")
	case bc.keys < 1:
		return usagef("--keys must be positive")
	case bc.dist != "uniform" && bc.dist != "zipf":
		return usagef("--dist %q is not uniform or zipf", bc.dist)
	case bc.dist == "zipf" && bc.zipfS <= 1:
		return usagef("--zipf-s must be greater than 1")
	case bc.readRatio < 0 || bc.readRatio > 1:
		return usagef("--read-ratio must be within [0, 1]")
	case bc.consistency != "" && bc.consistency != "one" && bc.consistency != "quorum" && bc.consistency != "all":
		return usagef("--consistency %q is not one, quorum or all", bc.consistency)
	case bc.protocol != "wire" && bc.protocol != "http":
		return usagef("--protocol %q is not wire or http", bc.protocol)
	case bc.conns < 1 || bc.conns > 1000:
		return usagef("--conns must be from 1 to 1000")
	}
	return nil
}

func (bc benchConfig) key(i uint64) []byte {
	return bc.appendKey(nil, i)
}

// appendKey appends key number i to b.
func (bc benchConfig) appendKey(b []byte, i uint64) []byte {
	return strconv.AppendUint(append(b, bc.prefix...), i, 10)
}

// contextMap holds the causal context that each key's last put returned,
// by key number. It is sharded by key number so that the workers seldom
// wait for each other, and costs the load generator less CPU per request
// than a map keyed by the key's text.
type contextMap struct {
	shards [64]contextShard
}

type contextShard struct {
	mu sync.Mutex
	m  map[uint64]string // guarded by mu
}

func newContextMap() *contextMap {
	c := &contextMap{}
	for i := range c.shards {
		c.shards[i].m = map[uint64]string{}
	}
	return c
}

func (c *contextMap) load(i uint64) string {
	s := &c.shards[i%uint64(len(c.shards))]
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m[i]
}

func (c *contextMap) store(i uint64, ctx string) {
	s := &c.shards[i%uint64(len(c.shards))]
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[i] = ctx
}

// fill writes every key of the keyspace once, so reads find values. It
// reads each key's context first, so that filling a keyspace a previous
// run left behind replaces its values instead of adding siblings.
func fill(ctx context.Context, cl *client.Client, bc benchConfig, contexts *contextMap) error {
	var next atomic.Int64
	value := make([]byte, bc.valueSize)
	var wg sync.WaitGroup
	errc := make(chan error, bc.concurrency)
	for w := 0; w < bc.concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(bc.keys) || ctx.Err() != nil {
					return
				}
				key := bc.key(uint64(i))
				var wopts client.WriteOptions
				if cur, err := cl.Get(ctx, key, client.ReadOptions{}); err == nil {
					wopts.Context = cur.Context
				}
				res, err := cl.Put(ctx, key, value, wopts)
				if err != nil {
					errc <- fmt.Errorf("filling the keyspace: %w", err)
					return
				}
				contexts.store(uint64(i), res.Context)
			}
		}()
	}
	wg.Wait()
	close(errc)
	return <-errc
}

// benchWorker is one client goroutine's state and results.
type benchWorker struct {
	key       []byte // the current request's key; reused
	rng       *rand.Rand
	zipf      *rand.Zipf
	latencies []time.Duration
	errors    int64
	misses    int64
	firstErr  error
}

func (w *benchWorker) pick(bc benchConfig) uint64 {
	if w.zipf != nil {
		return w.zipf.Uint64()
	}
	return w.rng.Uint64N(uint64(bc.keys))
}

// benchClient is what a bench worker sends its requests through:
// client.Wire, or client.KV, whose lean HTTP client leaves the shared
// cores to the daemons. A worker reuses its key's buffer for its next
// request, so a call does not keep key once it returns.
type benchClient interface {
	Put(ctx context.Context, key, value []byte, o client.WriteOptions) (client.WriteResponse, error)
	GetValue(ctx context.Context, key []byte, o client.ReadOptions) ([]byte, error)
	Ping(ctx context.Context) error
	Close()
}

func runBench(ctx context.Context, cl benchClient, bc benchConfig, contexts *contextMap) (BenchResult, error) {
	if bc.duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, bc.duration)
		defer cancel()
	}
	value := make([]byte, bc.valueSize)
	for i := range value {
		value[i] = 'a' + byte(i%26)
	}
	var remaining atomic.Int64
	remaining.Store(int64(bc.ops))
	workers := make([]*benchWorker, bc.concurrency)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range workers {
		w := &benchWorker{rng: rand.New(rand.NewPCG(bc.seed, uint64(i)))}
		if bc.dist == "zipf" {
			w.zipf = rand.NewZipf(w.rng, bc.zipfS, 1, uint64(bc.keys-1))
		}
		workers[i] = w
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.run(ctx, cl, bc, value, &remaining, contexts)
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	return summarize(bc, workers, elapsed)
}

// run issues requests until the count or the deadline is reached. Puts
// carry the causal context the previous put of the same key returned, as a
// client of a versioned store does, so repeated writes replace each other
// instead of piling up as siblings.
func (w *benchWorker) run(ctx context.Context, cl benchClient, bc benchConfig, value []byte, remaining *atomic.Int64, contexts *contextMap) {
	ropts := client.ReadOptions{Consistency: bc.consistency}
	for ctx.Err() == nil {
		if bc.duration == 0 && remaining.Add(-1) < 0 {
			return
		}
		if bc.op == "ping" {
			t0 := time.Now()
			err := cl.Ping(ctx)
			w.record(ctx, t0, err)
			continue
		}
		i := w.pick(bc)
		key := bc.appendKey(w.key[:0], i)
		w.key = key
		read := bc.op == "get" || (bc.op == "mixed" && w.rng.Float64() < bc.readRatio)
		t0 := time.Now()
		var err error
		if read {
			_, err = cl.GetValue(ctx, key, ropts)
		} else {
			wopts := client.WriteOptions{Consistency: bc.consistency}
			wopts.Context = contexts.load(i)
			var res client.WriteResponse
			if res, err = cl.Put(ctx, key, value, wopts); err == nil {
				contexts.store(i, res.Context)
			}
		}
		w.record(ctx, t0, err)
	}
}

// record counts the outcome of a request sent at t0.
func (w *benchWorker) record(ctx context.Context, t0 time.Time, err error) {
	d := time.Since(t0)
	switch {
	case err == nil, errors.Is(err, client.ErrSiblings): // a read that found siblings succeeded
		w.latencies = append(w.latencies, d)
	case errors.Is(err, client.ErrNotFound):
		w.latencies = append(w.latencies, d)
		w.misses++
	case ctx.Err() != nil:
		// the run's deadline cut this request short
	default:
		w.errors++
		if w.firstErr == nil {
			w.firstErr = err
		}
	}
}

func summarize(bc benchConfig, workers []*benchWorker, elapsed time.Duration) (BenchResult, error) {
	res := BenchResult{Op: bc.op, Concurrency: bc.concurrency, Protocol: bc.protocol, Seconds: elapsed.Seconds()}
	if bc.op != "ping" {
		res.ValueSize, res.Keys, res.Dist = bc.valueSize, bc.keys, bc.dist
	}
	var all []time.Duration
	for _, w := range workers {
		all = append(all, w.latencies...)
		res.Errors += w.errors
		res.Misses += w.misses
		if w.firstErr != nil && res.FirstError == "" {
			res.FirstError = w.firstErr.Error()
		}
	}
	res.Ops = int64(len(all))
	if res.Ops == 0 {
		for _, w := range workers {
			if w.firstErr != nil {
				return res, fmt.Errorf("every request failed; first error: %w", w.firstErr)
			}
		}
		return res, errors.New("no request completed")
	}
	slices.Sort(all)
	pct := func(p float64) float64 {
		i := int(p * float64(len(all)-1))
		return float64(all[i]) / 1e6
	}
	res.OpsPerSec = float64(res.Ops) / elapsed.Seconds()
	res.P50ms, res.P90ms, res.P99ms, res.P999ms = pct(0.50), pct(0.90), pct(0.99), pct(0.999)
	res.MaxMs = float64(all[len(all)-1]) / 1e6
	return res, nil
}

func (g *globals) printBench(r BenchResult) error {
	f, err := g.format()
	if err != nil {
		return err
	}
	if f == formatJSON {
		return g.emit(r, nil, nil)
	}
	if r.Op == "ping" {
		fmt.Fprintf(g.stdout, "ping: %d round trips in %.2fs, -c %d, %s protocol\n", r.Ops, r.Seconds, r.Concurrency, r.Protocol)
	} else {
		fmt.Fprintf(g.stdout, "%s: %d ops in %.2fs, -c %d, %d-byte values, %d keys (%s), %s protocol\n",
			r.Op, r.Ops, r.Seconds, r.Concurrency, r.ValueSize, r.Keys, r.Dist, r.Protocol)
	}
	fmt.Fprintf(g.stdout, "  %.0f ops/s  p50 %.3f ms  p90 %.3f ms  p99 %.3f ms  p99.9 %.3f ms  max %.3f ms\n",
		r.OpsPerSec, r.P50ms, r.P90ms, r.P99ms, r.P999ms, r.MaxMs)
	fmt.Fprintf(g.stdout, "  errors %d  misses %d\n", r.Errors, r.Misses)
	if r.FirstError != "" {
		fmt.Fprintf(g.stdout, "  first error: %s\n", r.FirstError)
	}
	return nil
}
