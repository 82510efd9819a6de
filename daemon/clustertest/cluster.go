//go:build clustertest

package clustertest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ringkv/ringkv/daemon/client"
)

// Cluster is a running ringkv cluster the nemesis can break and heal.
// Nodes are numbered 0..Size()-1; node 0 is the bootstrap peer of the
// others. Every method that changes a node waits for the change to be in
// force, not for the node to be ready again (see WaitReady).
type Cluster interface {
	// Mode is "docker" or "process".
	Mode() string
	Size() int
	// API is node i's API address as the test process reaches it.
	API(i int) string
	// Kill stops node i with SIGKILL; it stays down until Start.
	Kill(ctx context.Context, i int) error
	// Start starts node i again after Kill.
	Start(ctx context.Context, i int) error
	// Pause freezes node i's processes; Resume thaws them.
	Pause(ctx context.Context, i int) error
	Resume(ctx context.Context, i int) error
	// Restart stops node i with SIGTERM, waits for it to exit and starts it.
	Restart(ctx context.Context, i int) error
	// SetClockOffset restarts node i (gracefully) with its clock shifted by
	// d (RINGKV_TEST_CLOCK_OFFSET); 0 removes the offset.
	SetClockOffset(ctx context.Context, i int, d time.Duration) error
	// Isolate cuts node i off the network entirely (peers and clients);
	// Rejoin reconnects it.
	Isolate(ctx context.Context, i int) error
	Rejoin(ctx context.Context, i int) error
	// CanPartition reports whether Partition works in this mode.
	CanPartition() bool
	// Partition drops every packet between the nodes of side a and those
	// of side b, in both directions; clients still reach every node.
	// HealPartition removes every such rule.
	Partition(ctx context.Context, a, b []int) error
	HealPartition(ctx context.Context) error
	// SaveLogs writes each node's log to dir/node<i>.log.
	SaveLogs(ctx context.Context, dir string) error
	// Close removes the cluster: nodes, networks, data.
	Close(ctx context.Context) error
}

// ClusterConfig is what both modes need to bring a cluster up.
type ClusterConfig struct {
	// Nodes is the cluster size (default 5); Zones spreads them
	// round-robin over this many zones (default 3).
	Nodes int
	Zones int
	// Replicas, WriteQuorum and ReadQuorum are N, W and R (default 3/2/2).
	Replicas, WriteQuorum, ReadQuorum int
	// Timing is the daemons' membership timing, lan or local (default lan:
	// a loaded two-core host makes local's sub-second suspicion flap).
	Timing string
	// Loopback makes process mode run every node on the loopback interface
	// even when network namespaces are available (no network faults then).
	Loopback bool
	// Dir holds the binary, process-mode data dirs and logs.
	Dir string
	// Logf reports progress (t.Logf).
	Logf func(format string, args ...any)
}

// DefaultClusterConfig returns a 5-node, 3-zone, N=3 W=2 R=2 cluster with
// LAN timings.
func DefaultClusterConfig() ClusterConfig {
	return ClusterConfig{Nodes: 5, Zones: 3, Replicas: 3, WriteQuorum: 2, ReadQuorum: 2, Timing: "lan",
		Logf: func(string, ...any) {}}
}

// Validate checks the fields the modes rely on.
func (c ClusterConfig) Validate() error {
	switch {
	case c.Nodes < 1 || c.Nodes > 64:
		return fmt.Errorf("clustertest: nodes %d out of range 1..64", c.Nodes)
	case c.Zones < 1:
		return errors.New("clustertest: zones must be positive")
	case c.Replicas < 1 || c.WriteQuorum < 1 || c.ReadQuorum < 1 ||
		c.WriteQuorum > c.Replicas || c.ReadQuorum > c.Replicas:
		return fmt.Errorf("clustertest: bad quorums N=%d W=%d R=%d", c.Replicas, c.WriteQuorum, c.ReadQuorum)
	case c.Timing != "lan" && c.Timing != "local":
		return fmt.Errorf("clustertest: timing %q is not lan or local", c.Timing)
	case c.Dir == "":
		return errors.New("clustertest: a work dir is required")
	}
	return nil
}

// zone is node i's zone name.
func (c ClusterConfig) zone(i int) string { return fmt.Sprintf("zone-%c", 'a'+i%c.Zones) }

// daemonEnv are the RINGKV_* settings every node gets.
func (c ClusterConfig) daemonEnv() []string {
	return []string{
		"RINGKV_TIMING=" + c.Timing,
		"RINGKV_REPLICAS=" + strconv.Itoa(c.Replicas),
		"RINGKV_WRITE_QUORUM=" + strconv.Itoa(c.WriteQuorum),
		"RINGKV_READ_QUORUM=" + strconv.Itoa(c.ReadQuorum),
		"RINGKV_CONFLICTS=siblings",
	}
}

// WaitReady polls node i's /readyz until it answers ready or bound passes.
func WaitReady(ctx context.Context, c Cluster, i int, bound time.Duration) error {
	cl := client.New(c.API(i), 1)
	defer cl.Close()
	var last string
	err := poll(ctx, bound, 250*time.Millisecond, func() bool {
		rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		ok, reason, err := cl.Ready(rctx)
		switch {
		case err != nil:
			last = err.Error()
		case !ok:
			last = reason
		}
		return err == nil && ok
	})
	if err != nil {
		return fmt.Errorf("node %d not ready after %s (%s): %w", i+1, bound, last, err)
	}
	return nil
}

// WaitFormed waits until every node is ready and sees every member live.
func WaitFormed(ctx context.Context, c Cluster, bound time.Duration) error {
	deadline := time.Now().Add(bound)
	for i := 0; i < c.Size(); i++ {
		if err := WaitReady(ctx, c, i, time.Until(deadline)); err != nil {
			return err
		}
	}
	var last string
	err := poll(ctx, time.Until(deadline), 500*time.Millisecond, func() bool {
		for i := 0; i < c.Size(); i++ {
			st, err := status(ctx, c, i)
			if err != nil {
				last = fmt.Sprintf("node %d: %v", i+1, err)
				return false
			}
			if st.LiveMembers != c.Size() {
				last = fmt.Sprintf("node %d sees %d of %d members live", i+1, st.LiveMembers, c.Size())
				return false
			}
		}
		return true
	})
	if err != nil {
		return fmt.Errorf("cluster did not form (%s): %w", last, err)
	}
	return nil
}

func status(ctx context.Context, c Cluster, i int) (client.Status, error) {
	cl := client.New(c.API(i), 1)
	defer cl.Close()
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return cl.Status(sctx)
}

// errTimeout: a bounded poll ran out of time.
var errTimeout = errors.New("clustertest: condition not met in time")

// poll checks cond every interval until it holds, ctx ends or bound
// passes.
func poll(ctx context.Context, bound, interval time.Duration, cond func() bool) error {
	deadline := time.NewTimer(bound)
	defer deadline.Stop()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		if cond() {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline.C:
			return errTimeout
		case <-tick.C:
		}
	}
}

// pause waits d unless ctx ends first; it reports whether d elapsed.
func pause(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// run executes a command and returns its trimmed output; a failure carries
// the output.
func run(ctx context.Context, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	out, err := cmd.CombinedOutput()
	s := strings.TrimSpace(string(out))
	if err != nil {
		return s, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, s)
	}
	return s, nil
}

// freePorts finds n free TCP ports on the loopback interface.
func freePorts(n int) ([]int, error) {
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	ports := make([]int, 0, n)
	for i := 0; i < n; i++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// repoRoot is the module root, found through `go env GOMOD`.
func repoRoot(ctx context.Context) (string, error) {
	mod, err := run(ctx, "go", "env", "GOMOD")
	if err != nil {
		return "", err
	}
	if mod == "" || mod == "/dev/null" {
		return "", errors.New("clustertest: not inside the ringkv module")
	}
	return filepath.Dir(mod), nil
}

// buildBinary builds a static ringkv binary into dir.
func buildBinary(ctx context.Context, dir string) (string, error) {
	root, err := repoRoot(ctx)
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "ringkv")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, "./cli/ringkv")
	cmd.Dir = root
	cmd.Env = append(cmd.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("clustertest: go build: %w: %s", err, out)
	}
	return bin, nil
}

// forEach runs fn for every node index in parallel and joins the errors.
func forEach(n int, fn func(i int) error) error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = fn(i)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}
