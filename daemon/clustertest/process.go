//go:build clustertest

package clustertest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Process mode: the same binary as local processes, for hosts without
// Docker. As root, with iproute2 and iptables, every node runs in a
// network namespace of its own, joined to a private bridge by a veth pair:
// isolating a node takes its veth down (like docker network disconnect),
// and a majority/minority partition drops packets between the sides with
// iptables inside the namespaces. Without them the nodes share the
// loopback interface and the network faults are left out (the summary
// says so); kill -9, pause (SIGSTOP), graceful restart and clock offsets
// work either way.

type processCluster struct {
	cfg   ClusterConfig
	bin   string
	id    string
	netns bool
	// netns mode
	subnet, bridge string
	fwdRule        bool
	// loopback mode
	apiPorts, p2pPorts []int
	boot               string

	nodes []*procNode
}

type procNode struct {
	i   int
	dir string
	log *os.File

	mu     sync.Mutex
	cmd    *exec.Cmd     // guarded by mu; nil when stopped
	done   chan struct{} // guarded by mu; closed when cmd exits
	offset time.Duration // guarded by mu
}

// StartProcesses builds the binary and starts the nodes as processes.
func StartProcesses(ctx context.Context, cfg ClusterConfig) (_ Cluster, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	p := &processCluster{cfg: cfg, id: fmt.Sprintf("rk%04x", rand.Uint32()&0xffff)}
	defer func() {
		if err != nil {
			p.Close(context.Background())
		}
	}()
	if p.bin, err = buildBinary(ctx, cfg.Dir); err != nil {
		return nil, err
	}
	p.netns = !cfg.Loopback && os.Geteuid() == 0 && haveTools("ip", "iptables") && p.probeNetns(ctx)
	if p.netns {
		err = p.setupNetwork(ctx)
	} else {
		err = p.setupLoopback()
	}
	if err != nil {
		return nil, err
	}
	cfg.Logf("process: network namespaces: %v (without them partitions and isolation are skipped)", p.netns)
	for i := 0; i < cfg.Nodes; i++ {
		n := &procNode{i: i, dir: filepath.Join(cfg.Dir, fmt.Sprintf("node%d", i+1))}
		if n.log, err = os.OpenFile(filepath.Join(cfg.Dir, fmt.Sprintf("node%d.log", i+1)),
			os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); err != nil {
			return nil, err
		}
		p.nodes = append(p.nodes, n)
	}
	if err := p.Start(ctx, 0); err != nil {
		return nil, err
	}
	if err := WaitReady(ctx, p, 0, 60*time.Second); err != nil {
		return nil, err
	}
	st, err := status(ctx, p, 0)
	if err != nil {
		return nil, err
	}
	p.boot = fmt.Sprintf("/ip4/%s/tcp/%d/p2p/%s", p.ip(0), p.p2pPort(0), st.PeerID)
	for i := 1; i < cfg.Nodes; i++ {
		if err := p.Start(ctx, i); err != nil {
			return nil, err
		}
	}
	return p, nil
}

func (p *processCluster) probeNetns(ctx context.Context) bool {
	ns := p.id + "probe"
	if _, err := run(ctx, "ip", "netns", "add", ns); err != nil {
		return false
	}
	run(ctx, "ip", "netns", "del", ns)
	return true
}

func (p *processCluster) setupLoopback() error {
	ports, err := freePorts(2 * p.cfg.Nodes)
	if err != nil {
		return err
	}
	p.apiPorts, p.p2pPorts = ports[:p.cfg.Nodes], ports[p.cfg.Nodes:]
	return nil
}

// setupNetwork creates the bridge and one namespace per node.
func (p *processCluster) setupNetwork(ctx context.Context) error {
	routes, _ := run(ctx, "ip", "-4", "route")
	for try := 0; ; try++ {
		p.subnet = fmt.Sprintf("10.%d.%d", 200+rand.IntN(50), rand.IntN(256))
		if !strings.Contains(routes, p.subnet+".") || try > 20 {
			break
		}
	}
	p.bridge = p.id + "br"
	steps := [][]string{
		{"ip", "link", "add", p.bridge, "type", "bridge"},
		{"ip", "addr", "add", p.subnet + ".1/24", "dev", p.bridge},
		{"ip", "link", "set", p.bridge, "up"},
	}
	for i := 0; i < p.cfg.Nodes; i++ {
		ns, host, peer := p.ns(i), fmt.Sprintf("%sh%d", p.id, i+1), fmt.Sprintf("%sp%d", p.id, i+1)
		steps = append(steps,
			[]string{"ip", "netns", "add", ns},
			[]string{"ip", "link", "add", host, "type", "veth", "peer", "name", peer},
			[]string{"ip", "link", "set", peer, "netns", ns},
			[]string{"ip", "link", "set", host, "master", p.bridge},
			[]string{"ip", "link", "set", host, "up"},
			[]string{"ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"},
			[]string{"ip", "netns", "exec", ns, "ip", "addr", "add", p.ip(i) + "/24", "dev", peer},
			[]string{"ip", "netns", "exec", ns, "ip", "link", "set", peer, "up"},
		)
	}
	for _, s := range steps {
		if _, err := run(ctx, s[0], s[1:]...); err != nil {
			return err
		}
	}
	// Docker sets the FORWARD policy to DROP and bridged packets traverse
	// it when br_netfilter is loaded: let the bridge's own traffic through.
	if _, err := run(ctx, "iptables", "-w", "-I", "FORWARD", "-i", p.bridge, "-o", p.bridge, "-j", "ACCEPT"); err == nil {
		p.fwdRule = true
	}
	return nil
}

func (p *processCluster) ns(i int) string { return fmt.Sprintf("%sn%d", p.id, i+1) }

func (p *processCluster) ip(i int) string {
	if p.netns {
		return fmt.Sprintf("%s.%d", p.subnet, 11+i)
	}
	return "127.0.0.1"
}

func (p *processCluster) p2pPort(i int) int {
	if p.netns {
		return 7600
	}
	return p.p2pPorts[i]
}

func (p *processCluster) apiPort(i int) int {
	if p.netns {
		return 7601
	}
	return p.apiPorts[i]
}

func (p *processCluster) Mode() string     { return "process" }
func (p *processCluster) Size() int        { return p.cfg.Nodes }
func (p *processCluster) API(i int) string { return p.ip(i) + ":" + strconv.Itoa(p.apiPort(i)) }

// Start starts node i's daemon unless it is running.
func (p *processCluster) Start(ctx context.Context, i int) error {
	n := p.nodes[i]
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd != nil {
		return nil
	}
	args := []string{"daemon", "--data-dir", n.dir, "--zone", p.cfg.zone(i),
		"--listen", fmt.Sprintf("/ip4/%s/tcp/%d", p.ip(i), p.p2pPort(i)),
		"--listen", fmt.Sprintf("/ip4/%s/udp/%d/quic-v1", p.ip(i), p.p2pPort(i)),
		"--api", p.API(i)}
	if i > 0 {
		args = append(args, "--bootstrap", p.boot)
	}
	var cmd *exec.Cmd
	if p.netns {
		cmd = exec.Command("ip", append([]string{"netns", "exec", p.ns(i), p.bin}, args...)...)
	} else {
		cmd = exec.Command(p.bin, args...)
	}
	cmd.Env = append(cleanEnv(), p.cfg.daemonEnv()...)
	cmd.Env = append(cmd.Env, "HOME="+n.dir)
	if n.offset != 0 {
		cmd.Env = append(cmd.Env, "RINGKV_TEST_CLOCK_OFFSET="+n.offset.String())
	}
	fmt.Fprintf(n.log, "=== %s start %s\n", time.Now().Format(time.RFC3339Nano), strings.Join(args, " "))
	cmd.Stdout, cmd.Stderr = n.log, n.log
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("clustertest: start node %d: %w", i+1, err)
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		close(done)
	}()
	n.cmd, n.done = cmd, done
	return nil
}

func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "RINGKV_") && !strings.HasPrefix(kv, "HOME=") {
			env = append(env, kv)
		}
	}
	return env
}

// signal sends sig to node i's daemon; with wait it also waits for the
// exit, killing the process if it outlives bound.
func (p *processCluster) signal(ctx context.Context, i int, sig syscall.Signal, wait bool, bound time.Duration) error {
	n := p.nodes[i]
	n.mu.Lock()
	cmd, done := n.cmd, n.done
	n.mu.Unlock()
	if cmd == nil {
		return fmt.Errorf("clustertest: node %d is not running", i+1)
	}
	if err := cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("clustertest: signal node %d: %w", i+1, err)
	}
	if !wait {
		return nil
	}
	t := time.NewTimer(bound)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		cmd.Process.Signal(syscall.SIGCONT)
		cmd.Process.Kill()
		<-done
	case <-ctx.Done():
		return ctx.Err()
	}
	n.mu.Lock()
	n.cmd, n.done = nil, nil
	n.mu.Unlock()
	return nil
}

func (p *processCluster) Kill(ctx context.Context, i int) error {
	return p.signal(ctx, i, syscall.SIGKILL, true, 10*time.Second)
}

func (p *processCluster) Pause(ctx context.Context, i int) error {
	return p.signal(ctx, i, syscall.SIGSTOP, false, 0)
}

func (p *processCluster) Resume(ctx context.Context, i int) error {
	return p.signal(ctx, i, syscall.SIGCONT, false, 0)
}

func (p *processCluster) Restart(ctx context.Context, i int) error {
	if err := p.signal(ctx, i, syscall.SIGTERM, true, 30*time.Second); err != nil {
		return err
	}
	return p.Start(ctx, i)
}

func (p *processCluster) SetClockOffset(ctx context.Context, i int, d time.Duration) error {
	n := p.nodes[i]
	n.mu.Lock()
	n.offset = d
	n.mu.Unlock()
	return p.Restart(ctx, i)
}

func (p *processCluster) CanPartition() bool { return p.netns }

func (p *processCluster) Isolate(ctx context.Context, i int) error {
	if !p.netns {
		return errors.New("clustertest: isolation needs network namespaces")
	}
	_, err := run(ctx, "ip", "link", "set", fmt.Sprintf("%sh%d", p.id, i+1), "down")
	return err
}

func (p *processCluster) Rejoin(ctx context.Context, i int) error {
	if !p.netns {
		return nil
	}
	_, err := run(ctx, "ip", "link", "set", fmt.Sprintf("%sh%d", p.id, i+1), "up")
	return err
}

func (p *processCluster) nsIptables(ctx context.Context, i int, args ...string) error {
	_, err := run(ctx, "ip", append([]string{"netns", "exec", p.ns(i), "iptables", "-w"}, args...)...)
	return err
}

func (p *processCluster) Partition(ctx context.Context, a, b []int) error {
	if !p.netns {
		return errors.New("clustertest: partitions need network namespaces")
	}
	return errors.Join(
		cutLinks(ctx, a, b, p.ip, p.nsIptables),
		cutLinks(ctx, b, a, p.ip, p.nsIptables))
}

func (p *processCluster) HealPartition(ctx context.Context) error {
	if !p.netns {
		return nil
	}
	return forEach(p.cfg.Nodes, func(i int) error { return p.nsIptables(ctx, i, "-F") })
}

// SaveLogs copies each node's log file into dir.
func (p *processCluster) SaveLogs(ctx context.Context, dir string) error {
	var errs []error
	for i, n := range p.nodes {
		dst := filepath.Join(dir, fmt.Sprintf("node%d.log", i+1))
		if dst == n.log.Name() {
			continue
		}
		errs = append(errs, copyFile(n.log.Name(), dst))
	}
	return errors.Join(errs...)
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	return errors.Join(err, out.Close())
}

// Close stops every node, then removes the namespaces and the bridge.
func (p *processCluster) Close(ctx context.Context) error {
	for i, n := range p.nodes {
		n.mu.Lock()
		running := n.cmd != nil
		n.mu.Unlock()
		if running {
			p.signal(ctx, i, syscall.SIGCONT, false, 0)
			p.signal(ctx, i, syscall.SIGTERM, true, 20*time.Second)
		}
		n.log.Close()
	}
	var errs []error
	if p.netns {
		for i := 0; i < p.cfg.Nodes; i++ {
			if _, err := run(ctx, "ip", "netns", "del", p.ns(i)); err != nil && !strings.Contains(err.Error(), "No such file") {
				errs = append(errs, err)
			}
		}
		if p.bridge != "" {
			run(ctx, "ip", "link", "del", p.bridge)
		}
		if p.fwdRule {
			_, err := run(ctx, "iptables", "-w", "-D", "FORWARD", "-i", p.bridge, "-o", p.bridge, "-j", "ACCEPT")
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

var _ Cluster = (*processCluster)(nil)
