package cli

import (
	"fmt"
	"os"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/ringkv/ringkv/dht/sim"
)

// simFlags are the flags of `ringkv sim`.
type simFlags struct {
	cfg        sim.Config
	membership bool
	kill       int
	settle     time.Duration
	horizon    time.Duration
	quiet      bool
}

func newSimCmd(g *globals) *cobra.Command {
	sf := simFlags{cfg: sim.DefaultConfig()}
	mdef := sim.DefaultMembershipConfig()
	c := &cobra.Command{
		Use:   "sim",
		Short: "Simulate routing (or failure detection) at 10^3 to 10^6 nodes in simulated time",
		Long: "sim runs ringkv's real routing code over an in-memory network and a simulated clock, and\n" +
			"reports lookup hops (cold: successor lists and fingers only; warm: caches filled as gossip\n" +
			"fills them), success under churn, and routing-table sizes. With --membership it runs the\n" +
			"real SWIM membership instead, kills --kill nodes and reports how long every survivor took\n" +
			"to declare them dead. It needs no daemon. Progress goes to stderr.",
		Example: "  ringkv sim --nodes 100000 --lookups 10000 --warm\n" +
			"  ringkv sim --nodes 10000 --lookups 10000 --churn 0.1 --periods 5\n" +
			"  ringkv sim --membership --nodes 1000 --kill 3 -o json",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := sf.validate(cmd); err != nil {
				return err
			}
			if _, err := g.format(); err != nil {
				return err
			}
			if os.Getenv("GOGC") == "" {
				// A million routers are ~6 GB of live heap: collect at 1.5x
				// instead of 2x, trading some CPU for a smaller peak.
				debug.SetGCPercent(50)
			}
			progress := func(s string) {
				if !sf.quiet {
					fmt.Fprintln(g.stderr, "sim: "+s)
				}
			}
			if sf.membership {
				mc := mdef
				mc.Nodes, mc.Kill, mc.Seed, mc.Settle, mc.Horizon = sf.cfg.Nodes, sf.kill, sf.cfg.Seed, sf.settle, sf.horizon
				rep, err := sim.RunMembership(cmd.Context(), mc, progress)
				if err != nil {
					return err
				}
				return g.emitFields(rep, membershipFields(rep))
			}
			rep, err := sim.Run(cmd.Context(), sf.cfg, progress)
			if err != nil {
				return err
			}
			return g.emitFields(rep, routingFields(rep))
		},
	}
	f := c.Flags()
	f.IntVar(&sf.cfg.Nodes, "nodes", sf.cfg.Nodes, "ring size (2 to 2,000,000; membership: 3 to 10,000)")
	f.IntVar(&sf.cfg.Lookups, "lookups", sf.cfg.Lookups, "lookups per phase (cold, warm, all churn periods)")
	f.Float64Var(&sf.cfg.Churn, "churn", 0, "fraction of nodes replaced per stabilization period, 0 to 0.5")
	f.IntVar(&sf.cfg.Periods, "periods", 0, "churn periods (default 3 with --churn)")
	f.IntVar(&sf.cfg.VNodes, "vnodes", sf.cfg.VNodes, "tokens per node")
	f.IntVar(&sf.cfg.CacheSize, "cache", sf.cfg.CacheSize, "routing cache size of warm nodes (and of churning ones, unless --churn-cache)")
	f.IntVar(&sf.cfg.ChurnCacheSize, "churn-cache", sf.cfg.ChurnCacheSize, "routing cache size during churn (~200 B per entry and node)")
	f.BoolVar(&sf.cfg.Warm, "warm", false, "also measure lookups from nodes whose cache is full")
	f.IntVar(&sf.cfg.WarmAskers, "warm-askers", sf.cfg.WarmAskers, "nodes warmed for --warm")
	f.BoolVar(&sf.cfg.Recursive, "recursive", false, "recursive lookups instead of iterative")
	f.Uint64Var(&sf.cfg.Seed, "seed", sf.cfg.Seed, "random seed; a seed gives the same report")
	f.BoolVar(&sf.membership, "membership", false, "simulate SWIM failure detection instead of routing")
	f.IntVar(&sf.kill, "kill", mdef.Kill, "with --membership: nodes killed at once")
	f.DurationVar(&sf.settle, "settle", mdef.Settle, "with --membership: simulated time before the kill")
	f.DurationVar(&sf.horizon, "horizon", mdef.Horizon, "with --membership: simulated time allowed for detection")
	f.BoolVarP(&sf.quiet, "quiet", "q", false, "no progress on stderr")
	return c
}

// validate checks the flags and fills the defaults that depend on others.
func (sf *simFlags) validate(cmd *cobra.Command) error {
	set := func(name string) bool { return cmd.Flags().Changed(name) }
	if sf.membership {
		for _, name := range []string{"lookups", "churn", "periods", "vnodes", "cache", "churn-cache", "warm", "warm-askers", "recursive"} {
			if set(name) {
				return usagef("--%s applies to routing, not --membership", name)
			}
		}
		switch {
		case sf.cfg.Nodes < 3 || sf.cfg.Nodes > sim.MaxMembershipNodes:
			return usagef("--nodes must be from 3 to %d with --membership", sim.MaxMembershipNodes)
		case sf.kill < 1 || sf.kill > sf.cfg.Nodes/2:
			return usagef("--kill must be from 1 to half of --nodes (%d)", sf.cfg.Nodes/2)
		case sf.settle < 0 || sf.horizon <= 0:
			return usagef("--settle must not be negative and --horizon must be positive")
		}
		return nil
	}
	for _, name := range []string{"kill", "settle", "horizon"} {
		if set(name) {
			return usagef("--%s needs --membership", name)
		}
	}
	if sf.cfg.Churn > 0 && !set("periods") {
		sf.cfg.Periods = 3
	}
	if !set("churn-cache") {
		sf.cfg.ChurnCacheSize = sf.cfg.CacheSize
	}
	switch {
	case sf.cfg.Nodes < 2 || sf.cfg.Nodes > sim.MaxNodes:
		return usagef("--nodes must be from 2 to %d", sim.MaxNodes)
	case sf.cfg.Lookups < 1:
		return usagef("--lookups must be positive")
	case sf.cfg.Churn < 0 || sf.cfg.Churn > 0.5:
		return usagef("--churn must be within [0, 0.5]")
	case sf.cfg.Periods < 0 || (sf.cfg.Periods > 0 && sf.cfg.Churn == 0):
		return usagef("--periods needs a positive --churn")
	case sf.cfg.VNodes < 1:
		return usagef("--vnodes must be positive")
	case sf.cfg.CacheSize < 0 || sf.cfg.ChurnCacheSize < 0:
		return usagef("--cache and --churn-cache must not be negative")
	case sf.cfg.Warm && sf.cfg.WarmAskers < 1:
		return usagef("--warm-askers must be positive")
	}
	if err := sf.cfg.Validate(); err != nil {
		return usagef("%v", err)
	}
	return nil
}

func routingFields(r sim.Report) [][2]string {
	fields := [][2]string{
		{"nodes", strconv.Itoa(r.Nodes)},
		{"vnodes", strconv.Itoa(r.VNodes)},
		{"lookups per phase", strconv.Itoa(r.Lookups)},
		{"½·log2 N", fmt.Sprintf("%.2f", r.HalfLog2N)},
		{"cold mean hops", fmt.Sprintf("%.2f", r.MeanHopsCold)},
		{"cold p99 hops", strconv.Itoa(r.P99HopsCold)},
		{"messages per cold lookup", fmt.Sprintf("%.1f", r.MessagesPerLookup)},
	}
	if r.MeanHopsWarm > 0 || r.P99HopsWarm > 0 {
		fields = append(fields,
			[2]string{"warm mean hops", fmt.Sprintf("%.2f", r.MeanHopsWarm)},
			[2]string{"warm p99 hops", strconv.Itoa(r.P99HopsWarm)},
			[2]string{"cache size", strconv.Itoa(r.Cache)})
	}
	fields = append(fields,
		[2]string{"success", simPercent(r.SuccessRate)},
		[2]string{"correct owner", simPercent(r.CorrectRate)})
	if r.ChurnLookups > 0 {
		fields = append(fields,
			[2]string{"churn lookups", strconv.Itoa(r.ChurnLookups)},
			[2]string{"churn success", simPercent(r.ChurnSuccessRate)},
			[2]string{"churn correct owner", simPercent(r.ChurnCorrectRate)},
			[2]string{"churn mean hops", fmt.Sprintf("%.2f", r.MeanHopsChurn)},
			[2]string{"failed joins", strconv.Itoa(r.JoinFailures)})
	}
	return append(fields,
		[2]string{"table size mean/max (bound)", fmt.Sprintf("%.1f / %d (%d)", r.MeanTableSize, r.MaxTableSize, r.TableBound)},
		[2]string{"build", fmt.Sprintf("%.1fs", r.BuildSeconds)},
		[2]string{"wall time", fmt.Sprintf("%.1fs", r.Seconds)},
		[2]string{"peak RSS", humanBytes(r.MaxRSSBytes)})
}

func membershipFields(r sim.MembershipReport) [][2]string {
	return [][2]string{
		{"nodes", strconv.Itoa(r.Nodes)},
		{"killed", strconv.Itoa(r.Killed)},
		{"first detection (simulated)", fmt.Sprintf("%.1fs", r.FirstDetectSeconds)},
		{"detection mean (simulated)", fmt.Sprintf("%.1fs", r.DetectMeanSeconds)},
		{"detection max (simulated)", fmt.Sprintf("%.1fs", r.DetectMaxSeconds)},
		{"undetected pairs", strconv.Itoa(r.Undetected)},
		{"false deaths", strconv.Itoa(r.FalsePositives)},
		{"messages", strconv.FormatUint(r.Messages, 10)},
		{"messages per node per second", fmt.Sprintf("%.1f", r.MessagesPerNodeSec)},
		{"wall time", fmt.Sprintf("%.1fs", r.Seconds)},
		{"peak RSS", humanBytes(r.MaxRSSBytes)},
	}
}

func simPercent(f float64) string { return fmt.Sprintf("%.2f%%", 100*f) }
