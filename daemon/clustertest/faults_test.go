//go:build clustertest

package clustertest

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

var (
	flagDuration  = flag.Duration("duration", 3*time.Minute, "how long the workload and the nemesis run")
	flagSeed      = flag.Uint64("seed", 0, "seed of the fault schedule and the clients (0 picks one and prints it)")
	flagNodes     = flag.Int("nodes", 5, "cluster size")
	flagMode      = flag.String("mode", "auto", "docker, process, or auto (docker when a Docker engine answers)")
	flagEvery     = flag.Duration("faults-every", 10*time.Second, "mean time between the starts of two faults")
	flagFaults    = flag.String("faults", "", "comma-separated fault kinds to use (default all the mode supports)")
	flagRate      = flag.Float64("rate", 10, "operations per second per client (three clients per node)")
	flagReplicas  = flag.Int("replicas", 3, "N")
	flagWQ        = flag.Int("write-quorum", 2, "W")
	flagRQ        = flag.Int("read-quorum", 2, "R")
	flagTiming    = flag.String("timing", "lan", "daemon membership timings: lan or local")
	flagOut       = flag.String("out", "", "directory for the history, fault log and node logs (default a new temp dir)")
	flagKeep      = flag.Bool("keep", false, "leave the cluster running after the test")
	flagLoopback  = flag.Bool("loopback", false, "process mode: run the nodes on loopback, without network namespaces (no network faults)")
	flagMinFaults = flag.Int("min-faults", 0, "run past -duration (by up to half of it) until this many faults were injected; fail if still fewer")
	flagConverge  = flag.Duration("converge-bound", 60*time.Second, "time after healing within which replicas must converge")
)

// TestFaults runs the fault-injection suite; see the package doc.
func TestFaults(t *testing.T) {
	seed := *flagSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano()) & (1<<48 - 1)
	}
	logf := func(format string, args ...any) {
		t.Logf("%s "+format, append([]any{time.Now().Format("15:04:05.000")}, args...)...)
	}
	t.Logf("seed=%d", seed)
	if dl, ok := t.Deadline(); ok && time.Until(dl) < *flagDuration+6*time.Minute {
		t.Fatalf("-duration %s does not fit in the test timeout (%s left): pass -timeout %s",
			*flagDuration, time.Until(dl).Round(time.Second), (*flagDuration + 10*time.Minute).Round(time.Minute))
	}
	out := *flagOut
	if out == "" {
		var err error
		if out, err = os.MkdirTemp("", fmt.Sprintf("ringkv-clustertest-%d-", seed)); err != nil {
			t.Fatal(err)
		}
	} else if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Logf("output in %s", out)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	c := startCluster(t, ctx, out, logf)
	rep := runSuite(t, ctx, c, seed, out, logf)

	if err := c.SaveLogs(context.Background(), out); err != nil {
		t.Logf("saving node logs: %v", err)
	}
	writeReport(t, out, rep)
	t.Logf("faults by kind: %s", kindsLine(rep.FaultsByKind))
	t.Logf("mode=%s seed=%d; replay: %s", rep.Mode, seed, replayCommand(seed, rep.Mode))
	fmt.Println(rep.Summary())
	t.Log(rep.Summary())
	if *flagMinFaults > 0 && rep.Faults < *flagMinFaults {
		t.Errorf("only %d faults injected, want at least %d: lengthen -duration or shorten -faults-every", rep.Faults, *flagMinFaults)
	}
	if !rep.OK() {
		t.Errorf("checker failed (seed %d, history and node logs in %s):\n%s", seed, out, rep.Details(30))
		if keys := rep.LostKeys(); len(keys) > 0 {
			t.Errorf("lost keys: %s", strings.Join(keys, " "))
		}
	}
}

func startCluster(t *testing.T, ctx context.Context, out string, logf func(string, ...any)) Cluster {
	cfg := DefaultClusterConfig()
	cfg.Nodes, cfg.Replicas, cfg.WriteQuorum, cfg.ReadQuorum = *flagNodes, *flagReplicas, *flagWQ, *flagRQ
	cfg.Timing, cfg.Dir, cfg.Logf, cfg.Loopback = *flagTiming, out, logf, *flagLoopback
	mode := *flagMode
	if mode == "auto" {
		mode = "process"
		if DockerAvailable(ctx) {
			mode = "docker"
		}
	}
	logf("mode %s: starting %d nodes (N=%d W=%d R=%d, timing %s)", mode, cfg.Nodes, cfg.Replicas, cfg.WriteQuorum, cfg.ReadQuorum, cfg.Timing)
	start := time.Now()
	var c Cluster
	var err error
	switch mode {
	case "docker":
		c, err = StartDocker(ctx, cfg)
	case "process":
		c, err = StartProcesses(ctx, cfg)
	default:
		t.Fatalf("-mode %q is not docker, process or auto", mode)
	}
	if err != nil {
		t.Fatalf("starting the cluster: %v", err)
	}
	t.Cleanup(func() {
		if *flagKeep {
			t.Logf("-keep: cluster left running")
			return
		}
		cctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := c.Close(cctx); err != nil {
			t.Logf("removing the cluster: %v", err)
		}
	})
	if err := WaitFormed(ctx, c, 2*time.Minute); err != nil {
		c.SaveLogs(context.Background(), out)
		t.Fatalf("%v (node logs in %s)", err, out)
	}
	logf("cluster formed in %.1fs", time.Since(start).Seconds())
	return c
}

// runSuite runs workload and nemesis, heals, waits for convergence, reads
// every key through every node and checks the history.
func runSuite(t *testing.T, ctx context.Context, c Cluster, seed uint64, out string, logf func(string, ...any)) Report {
	h := NewHistory()
	ncfg := NemesisConfig{Every: *flagEvery, Seed: seed, Logf: logf}
	if *flagFaults != "" {
		ncfg.Kinds = strings.Split(*flagFaults, ",")
	}
	nem := NewNemesis(c, h, ncfg)
	logf("faults: %s", strings.Join(nem.Kinds(), ", "))
	if !c.CanPartition() {
		logf("network faults (partition-one, partition-majority) are not available in this mode and are left out")
	}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wl := StartWorkload(rctx, c, h, WorkloadConfig{Rate: *flagRate, Seed: seed, Tag: fmt.Sprintf("r%x", seed&0xffffff)})
	done := make(chan struct{})
	go func() {
		defer close(done)
		nem.Run(rctx)
	}()
	runFor(rctx, nem, *flagDuration, *flagMinFaults)
	cancel()
	<-done
	wl.Wait()
	logf("run over: %d ops, %d faults; healing", h.Len(), len(nem.Windows()))

	hctx, hcancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer hcancel()
	var problems []string
	if err := HealAll(hctx, c, 2*time.Minute); err != nil {
		problems = append(problems, "heal: "+err.Error())
	}
	conv := WaitConverged(hctx, c, *flagReplicas, max(2*time.Minute, 2**flagConverge))
	logf("convergence: converged=%v after %.1fs (roots agreed after %.1fs), %d repair rounds, %d arcs, hints per node %v %s",
		conv.Converged, conv.After.Seconds(), conv.RootsAfter.Seconds(), conv.RepairRounds, conv.Arcs, conv.Hints, conv.Detail)
	switch {
	case !conv.Converged:
		problems = append(problems, "replicas did not converge: "+conv.Detail)
	case conv.After > *flagConverge:
		problems = append(problems, fmt.Sprintf("replicas converged after %.1fs, over the %s bound", conv.After.Seconds(), *flagConverge))
	}
	keys := WrittenKeys(h.Ops())
	fstart := time.Now()
	FinalReads(hctx, c, h, keys, 5, 10*time.Second)
	logf("final reads: %d keys through %d nodes in %.1fs", len(keys), c.Size(), time.Since(fstart).Seconds())

	rep := Check(Input{Ops: h.Ops(), Windows: nem.Windows(), Nodes: c.Size()})
	rep.Mode, rep.Converged, rep.ConvergedS, rep.Hints = c.Mode(), conv.Converged, conv.After.Seconds(), conv.HintsTotal()
	rep.RootsS = conv.RootsAfter.Seconds()
	rep.FinalReadsS = time.Since(fstart).Seconds()
	rep.Problems = append(append(rep.Problems, nem.Problems()...), problems...)
	if err := writeHistory(out, h.Ops(), nem.Windows()); err != nil {
		t.Logf("writing the history: %v", err)
	}
	return rep
}

// runFor waits for the run's duration; if by then fewer than minFaults
// faults were injected it keeps the run going until they were, for at most
// half the duration more.
func runFor(ctx context.Context, nem *Nemesis, d time.Duration, minFaults int) {
	if !pause(ctx, d) || len(nem.Windows()) >= minFaults {
		return
	}
	poll(ctx, d/2, time.Second, func() bool { return len(nem.Windows()) >= minFaults })
}

func writeHistory(out string, ops []Op, windows []FaultWindow) error {
	f, err := os.Create(filepath.Join(out, "history.jsonl"))
	if err != nil {
		return err
	}
	if err := WriteJSONL(f, ops); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	b, err := json.MarshalIndent(windows, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(out, "faults.json"), b, 0o644)
}

func writeReport(t *testing.T, out string, rep Report) {
	text := rep.Summary() + "\nfaults by kind: " + kindsLine(rep.FaultsByKind) + "\n" + rep.Details(1000)
	if err := os.WriteFile(filepath.Join(out, "summary.txt"), []byte(text), 0o644); err != nil {
		t.Logf("writing the summary: %v", err)
	}
}

// replayCommand is the go test command that replays this run's fault
// schedule: the flags given, with the seed and the mode that ran.
func replayCommand(seed uint64, mode string) string {
	args := []string{"go test -tags clustertest ./daemon/clustertest -run TestFaults -v"}
	flag.Visit(func(f *flag.Flag) {
		switch {
		case strings.HasPrefix(f.Name, "test."), f.Name == "seed", f.Name == "mode", f.Name == "out", f.Name == "keep":
		default:
			args = append(args, fmt.Sprintf("-%s %s", f.Name, f.Value))
		}
	})
	if to := flag.Lookup("test.timeout"); to != nil && to.Value.String() != "10m0s" {
		args = append(args, "-timeout "+to.Value.String())
	}
	return strings.Join(append(args, fmt.Sprintf("-mode %s -seed %d", mode, seed)), " ")
}

func kindsLine(m map[string]int) string {
	var parts []string
	for k, n := range m {
		parts = append(parts, fmt.Sprintf("%s=%d", k, n))
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}
