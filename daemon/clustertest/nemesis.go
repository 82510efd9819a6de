//go:build clustertest

package clustertest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"
)

// Fault kinds the nemesis injects.
const (
	FaultIsolate   = "partition-one"      // one node cut off the network
	FaultMajority  = "partition-majority" // minority and majority sides
	FaultKill      = "kill"               // kill -9, down a while, start
	FaultPause     = "pause"              // processes frozen 5-30 s
	FaultRestart   = "restart"            // graceful restart (SIGTERM)
	FaultClockSkew = "clock"              // restart with a clock offset, then without
)

// NemesisConfig tunes the fault schedule.
type NemesisConfig struct {
	// Every is the mean time from the start of one fault to the start of
	// the next (jittered ±30%, and never less than 2s after the previous
	// heal). Default 10s.
	Every time.Duration
	// Seed drives every choice: fault kind, node, durations, offsets.
	Seed uint64
	// Kinds are the faults to pick from. Default: all six, minus the
	// network ones when the cluster cannot cut links.
	Kinds []string
	// ReadyBound is how long a healed node gets to answer ready before the
	// run reports a problem. Default 60s.
	ReadyBound time.Duration
	Logf       func(format string, args ...any)
}

// Nemesis injects one fault at a time into a cluster and records when each
// was in force.
type Nemesis struct {
	c   Cluster
	cfg NemesisConfig
	rng *rand.Rand
	h   *History

	mu       sync.Mutex
	windows  []FaultWindow // guarded by mu
	problems []string      // guarded by mu
}

// NewNemesis prepares a schedule for c; times are offsets on h's clock.
func NewNemesis(c Cluster, h *History, cfg NemesisConfig) *Nemesis {
	if cfg.Every <= 0 {
		cfg.Every = 10 * time.Second
	}
	if cfg.ReadyBound <= 0 {
		cfg.ReadyBound = 60 * time.Second
	}
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	if len(cfg.Kinds) == 0 {
		cfg.Kinds = []string{FaultKill, FaultPause, FaultRestart, FaultClockSkew}
		if c.CanPartition() {
			cfg.Kinds = append([]string{FaultIsolate, FaultMajority}, cfg.Kinds...)
		}
	}
	return &Nemesis{c: c, cfg: cfg, h: h, rng: rand.New(rand.NewPCG(cfg.Seed, 0x6e656d65))}
}

// Kinds are the faults this nemesis picks from.
func (n *Nemesis) Kinds() []string { return slices.Clone(n.cfg.Kinds) }

// Run injects faults until ctx ends. A fault in force when ctx ends is
// healed before Run returns.
func (n *Nemesis) Run(ctx context.Context) {
	next := n.jitter(n.cfg.Every)
	for pause(ctx, next) {
		start := time.Now()
		n.inject(ctx)
		next = max(n.jitter(n.cfg.Every)-time.Since(start), 2*time.Second)
	}
}

func (n *Nemesis) jitter(d time.Duration) time.Duration {
	return time.Duration(float64(d) * (0.7 + 0.6*n.rng.Float64()))
}

// between picks a duration uniformly in [lo, hi].
func (n *Nemesis) between(lo, hi time.Duration) time.Duration {
	return lo + time.Duration(n.rng.Int64N(int64(hi-lo)+1))
}

// fault is one planned fault: its window (times filled in as it runs),
// how long to hold it, and how to apply and heal it.
type fault struct {
	w           FaultWindow
	hold        time.Duration
	apply, heal func(context.Context) error
}

// plan draws the next fault from the seeded generator.
func (n *Nemesis) plan() fault {
	kind := n.cfg.Kinds[n.rng.IntN(len(n.cfg.Kinds))]
	size := n.c.Size()
	node := n.rng.IntN(size)
	f := fault{w: FaultWindow{Kind: kind, Nodes: []int{node}, Affected: 1, Detail: fmt.Sprintf("node %d", node+1)}}
	switch kind {
	case FaultIsolate:
		f.hold = n.between(5*time.Second, 15*time.Second)
		f.apply = func(c context.Context) error { return n.c.Isolate(c, node) }
		f.heal = func(c context.Context) error { return n.c.Rejoin(c, node) }
	case FaultMajority:
		minority := n.rng.Perm(size)[:(size-1)/2]
		slices.Sort(minority)
		var majority []int
		for i := 0; i < size; i++ {
			if !slices.Contains(minority, i) {
				majority = append(majority, i)
			}
		}
		f.w.Nodes, f.w.Affected = minority, len(minority)
		f.w.Detail = fmt.Sprintf("minority %v majority %v", oneBased(minority), oneBased(majority))
		f.hold = n.between(5*time.Second, 15*time.Second)
		f.apply = func(c context.Context) error { return n.c.Partition(c, minority, majority) }
		f.heal = func(c context.Context) error { return n.c.HealPartition(c) }
	case FaultKill:
		f.hold = n.between(2*time.Second, 10*time.Second)
		f.apply = func(c context.Context) error { return n.c.Kill(c, node) }
		f.heal = func(c context.Context) error { return n.c.Start(c, node) }
	case FaultPause:
		f.hold = n.between(5*time.Second, 30*time.Second)
		f.apply = func(c context.Context) error { return n.c.Pause(c, node) }
		f.heal = func(c context.Context) error { return n.c.Resume(c, node) }
	case FaultRestart:
		f.apply = func(c context.Context) error { return n.c.Restart(c, node) }
		f.heal = func(context.Context) error { return nil }
	case FaultClockSkew:
		off := n.between(time.Second, 3*time.Second).Round(100 * time.Millisecond)
		if n.rng.IntN(2) == 0 {
			off = -off
		}
		f.w.Detail = fmt.Sprintf("node %d offset %s", node+1, off)
		f.hold = n.between(10*time.Second, 20*time.Second)
		f.apply = func(c context.Context) error { return n.c.SetClockOffset(c, node, off) }
		f.heal = func(c context.Context) error { return n.c.SetClockOffset(c, node, 0) }
	default:
		f.apply = func(context.Context) error { return fmt.Errorf("unknown fault kind %q", kind) }
		f.heal = func(context.Context) error { return nil }
	}
	return f
}

// inject applies one fault, holds it, heals it and records its window.
// Heal runs on a fresh context so that a cancelled run still heals.
func (n *Nemesis) inject(ctx context.Context) {
	f := n.plan()
	w := &f.w
	w.Start = n.h.Since()
	n.cfg.Logf("nemesis %7.2fs: %s %s, hold %s", w.Start.Seconds(), w.Kind, w.Detail, f.hold.Round(time.Millisecond))
	actx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	err := f.apply(actx)
	cancel()
	if err != nil {
		n.problem("%s %s: inject: %v", w.Kind, w.Detail, err)
	}
	pause(ctx, f.hold)
	hctx, cancel := context.WithTimeout(context.Background(), 2*n.cfg.ReadyBound)
	defer cancel()
	if err := f.heal(hctx); err != nil {
		n.problem("%s %s: heal: %v", w.Kind, w.Detail, err)
	}
	for _, i := range w.Nodes {
		if err := WaitReady(hctx, n.c, i, n.cfg.ReadyBound); err != nil {
			n.problem("%s %s: %v", w.Kind, w.Detail, err)
		}
	}
	w.End = n.h.Since()
	n.cfg.Logf("nemesis %7.2fs: healed %s %s (%.1fs in force)", w.End.Seconds(), w.Kind, w.Detail, (w.End - w.Start).Seconds())
	n.mu.Lock()
	n.windows = append(n.windows, *w)
	n.mu.Unlock()
}

func (n *Nemesis) problem(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	n.cfg.Logf("nemesis problem: %s", msg)
	n.mu.Lock()
	n.problems = append(n.problems, msg)
	n.mu.Unlock()
}

// Windows are the faults injected so far.
func (n *Nemesis) Windows() []FaultWindow {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.windows)
}

// Problems are faults that could not be injected or healed, and nodes
// that did not come back ready in time.
func (n *Nemesis) Problems() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.problems)
}

// HealAll undoes anything a fault could have left behind: partitions,
// isolation, pauses and stopped nodes, then waits until every node answers
// ready. (Clock offsets need no undoing: the nemesis always restores them,
// on a fresh context, before its Run returns.)
func HealAll(ctx context.Context, c Cluster, bound time.Duration) error {
	var errs []error
	if c.CanPartition() {
		errs = append(errs, c.HealPartition(ctx))
	}
	for i := 0; i < c.Size(); i++ {
		// Each of these is a no-op or a harmless error when the node is
		// already in the desired state; only readiness decides.
		if c.CanPartition() {
			c.Rejoin(ctx, i)
		}
		c.Resume(ctx, i)
		c.Start(ctx, i)
	}
	for i := 0; i < c.Size(); i++ {
		errs = append(errs, WaitReady(ctx, c, i, bound))
	}
	return errors.Join(errs...)
}
