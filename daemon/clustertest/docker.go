//go:build clustertest

package clustertest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Docker mode: the image FROM scratch that daemon/deploy/Dockerfile
// describes, built the way daemon/deploy/build-image.sh builds it, one
// container per node on a private bridge network with fixed addresses,
// each node's API published on a distinct 127.0.0.1 port, data on a named
// volume that outlives the container (so a clock-offset restart, which
// recreates the container, keeps the node's identity and data).
//
// Faults: docker kill -s KILL / start, pause / unpause, restart; isolation
// is docker network disconnect / connect (the node also vanishes for its
// clients, as a host unplugged would); a majority/minority partition drops
// packets between the sides with iptables rules inside the containers'
// network namespaces (entered with nsenter; the image has no tools), so
// each side stays connected within itself and to its clients.

// ImageTag is the image the suite builds and runs.
const ImageTag = "ringkv:clustertest"

// DockerAvailable reports whether a Docker engine answers.
func DockerAvailable(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err := run(ctx, "docker", "version", "--format", "{{.Server.Version}}")
	return err == nil
}

type dockerCluster struct {
	cfg     ClusterConfig
	id      string // prefix of every name
	network string
	subnet  string // first three octets, e.g. "10.231.17"
	ports   []int
	boot    string // node 0's bootstrap multiaddr
	canPart bool

	mu      sync.Mutex
	offsets []time.Duration // guarded by mu; clock offset per node
	// replaced holds, per node, the logs of the containers that
	// SetClockOffset removed, for SaveLogs; guarded by mu.
	replaced []string
}

// StartDocker builds the image and brings up a cluster of containers.
func StartDocker(ctx context.Context, cfg ClusterConfig) (_ Cluster, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := buildImage(ctx, cfg.Dir); err != nil {
		return nil, err
	}
	d := &dockerCluster{cfg: cfg, id: fmt.Sprintf("rkct%06x", rand.Uint32()&0xffffff),
		offsets: make([]time.Duration, cfg.Nodes), replaced: make([]string, cfg.Nodes)}
	defer func() {
		if err != nil {
			d.Close(context.Background())
		}
	}()
	if d.ports, err = freePorts(cfg.Nodes); err != nil {
		return nil, err
	}
	if err := d.createNetwork(ctx); err != nil {
		return nil, err
	}
	d.canPart = os.Geteuid() == 0 && haveTools("nsenter", "iptables")
	cfg.Logf("docker: network %s (%s.0/24), partitions by iptables in the containers' netns: %v", d.network, d.subnet, d.canPart)
	for i := 0; i < cfg.Nodes; i++ {
		if _, err := run(ctx, "docker", "volume", "create", "--label", "ringkv.clustertest="+d.id, d.name(i)); err != nil {
			return nil, err
		}
	}
	if err := d.runNode(ctx, 0); err != nil {
		return nil, err
	}
	if err := WaitReady(ctx, d, 0, 60*time.Second); err != nil {
		return nil, err
	}
	st, err := status(ctx, d, 0)
	if err != nil {
		return nil, err
	}
	d.boot = fmt.Sprintf("/ip4/%s/tcp/7600/p2p/%s", d.ip(0), st.PeerID)
	err = forEach(cfg.Nodes-1, func(i int) error { return d.runNode(ctx, i+1) })
	return d, err
}

// buildImage builds the static binary and the image FROM scratch with the
// repository's Dockerfile, pulling nothing.
func buildImage(ctx context.Context, dir string) error {
	bctx := filepath.Join(dir, "image")
	if err := os.MkdirAll(filepath.Join(bctx, "data"), 0o755); err != nil {
		return err
	}
	if _, err := buildBinary(ctx, bctx); err != nil {
		return err
	}
	root, err := repoRoot(ctx)
	if err != nil {
		return err
	}
	df, err := os.ReadFile(filepath.Join(root, "daemon", "deploy", "Dockerfile"))
	if err != nil {
		return fmt.Errorf("clustertest: %w", err)
	}
	if err := os.WriteFile(filepath.Join(bctx, "Dockerfile"), df, 0o644); err != nil {
		return err
	}
	_, err = run(ctx, "docker", "build", "--pull=false", "-q", "-t", ImageTag, bctx)
	return err
}

func haveTools(names ...string) bool {
	for _, n := range names {
		if _, err := run(context.Background(), "sh", "-c", "command -v "+n); err != nil {
			return false
		}
	}
	return true
}

func (d *dockerCluster) createNetwork(ctx context.Context) error {
	d.network = d.id
	var errs []error
	for try := 0; try < 8; try++ {
		d.subnet = fmt.Sprintf("10.%d.%d", 200+rand.IntN(50), rand.IntN(256))
		_, err := run(ctx, "docker", "network", "create", "--driver", "bridge",
			"--subnet", d.subnet+".0/24", "--label", "ringkv.clustertest="+d.id, d.network)
		if err == nil {
			return nil
		}
		errs = append(errs, err)
	}
	return fmt.Errorf("clustertest: no free subnet for the test network: %w", errors.Join(errs...))
}

func (d *dockerCluster) name(i int) string { return fmt.Sprintf("%s-n%d", d.id, i+1) }
func (d *dockerCluster) ip(i int) string   { return fmt.Sprintf("%s.%d", d.subnet, 11+i) }

// runNode creates and starts node i's container with its current clock
// offset.
func (d *dockerCluster) runNode(ctx context.Context, i int) error {
	d.mu.Lock()
	offset := d.offsets[i]
	d.mu.Unlock()
	args := []string{"run", "-d", "--name", d.name(i), "--hostname", fmt.Sprintf("n%d", i+1),
		"--network", d.network, "--ip", d.ip(i),
		"-p", fmt.Sprintf("127.0.0.1:%d:7601", d.ports[i]),
		"-v", d.name(i) + ":/data", "--label", "ringkv.clustertest=" + d.id,
		"--stop-timeout", "20"}
	for _, kv := range d.cfg.daemonEnv() {
		args = append(args, "-e", kv)
	}
	if offset != 0 {
		args = append(args, "-e", "RINGKV_TEST_CLOCK_OFFSET="+offset.String())
	}
	args = append(args, ImageTag, "--zone", d.cfg.zone(i))
	if i > 0 {
		args = append(args, "--bootstrap", d.boot)
	}
	_, err := run(ctx, "docker", args...)
	return err
}

func (d *dockerCluster) Mode() string     { return "docker" }
func (d *dockerCluster) Size() int        { return d.cfg.Nodes }
func (d *dockerCluster) API(i int) string { return "127.0.0.1:" + strconv.Itoa(d.ports[i]) }

func (d *dockerCluster) docker(ctx context.Context, args ...string) error {
	_, err := run(ctx, "docker", args...)
	return err
}

func (d *dockerCluster) Kill(ctx context.Context, i int) error {
	return d.docker(ctx, "kill", "-s", "KILL", d.name(i))
}

func (d *dockerCluster) Start(ctx context.Context, i int) error {
	return d.docker(ctx, "start", d.name(i))
}

func (d *dockerCluster) Pause(ctx context.Context, i int) error {
	return d.docker(ctx, "pause", d.name(i))
}

func (d *dockerCluster) Resume(ctx context.Context, i int) error {
	return d.docker(ctx, "unpause", d.name(i))
}

func (d *dockerCluster) Restart(ctx context.Context, i int) error {
	return d.docker(ctx, "restart", "-t", "20", d.name(i))
}

// SetClockOffset recreates the container (environment variables cannot
// change on a restart); the named volume keeps identity and data.
func (d *dockerCluster) SetClockOffset(ctx context.Context, i int, off time.Duration) error {
	d.mu.Lock()
	d.offsets[i] = off
	d.mu.Unlock()
	if err := d.docker(ctx, "stop", "-t", "20", d.name(i)); err != nil {
		return err
	}
	if out, err := run(ctx, "docker", "logs", "--timestamps", d.name(i)); err == nil || out != "" {
		d.mu.Lock()
		d.replaced[i] += out + "\n"
		d.mu.Unlock()
	}
	if err := d.docker(ctx, "rm", d.name(i)); err != nil {
		return err
	}
	return d.runNode(ctx, i)
}

func (d *dockerCluster) Isolate(ctx context.Context, i int) error {
	return d.docker(ctx, "network", "disconnect", d.network, d.name(i))
}

func (d *dockerCluster) Rejoin(ctx context.Context, i int) error {
	return d.docker(ctx, "network", "connect", "--ip", d.ip(i), d.network, d.name(i))
}

func (d *dockerCluster) CanPartition() bool { return d.canPart }

// nsIptables runs iptables inside node i's network namespace.
func (d *dockerCluster) nsIptables(ctx context.Context, i int, args ...string) error {
	pid, err := run(ctx, "docker", "inspect", "-f", "{{.State.Pid}}", d.name(i))
	if err != nil {
		return err
	}
	if pid == "0" || pid == "" {
		return fmt.Errorf("clustertest: node %d is not running", i+1)
	}
	_, err = run(ctx, "nsenter", append([]string{"-t", pid, "-n", "iptables", "-w"}, args...)...)
	return err
}

func (d *dockerCluster) Partition(ctx context.Context, a, b []int) error {
	if !d.canPart {
		return errors.New("clustertest: partitions need root, nsenter and iptables")
	}
	return errors.Join(
		cutLinks(ctx, a, b, d.ip, d.nsIptables),
		cutLinks(ctx, b, a, d.ip, d.nsIptables))
}

// cutLinks drops, inside each node of from, every packet to or from the
// nodes of to.
func cutLinks(ctx context.Context, from, to []int, ip func(int) string,
	iptables func(ctx context.Context, i int, args ...string) error) error {
	var peers []string
	for _, j := range to {
		peers = append(peers, ip(j))
	}
	list := strings.Join(peers, ",")
	return forEach(len(from), func(k int) error {
		i := from[k]
		return errors.Join(
			iptables(ctx, i, "-A", "INPUT", "-s", list, "-j", "DROP"),
			iptables(ctx, i, "-A", "OUTPUT", "-d", list, "-j", "DROP"))
	})
}

func (d *dockerCluster) HealPartition(ctx context.Context) error {
	if !d.canPart {
		return nil
	}
	return forEach(d.cfg.Nodes, func(i int) error { return d.nsIptables(ctx, i, "-F") })
}

// SaveLogs writes each node's log: those of the containers a clock offset
// replaced, then the current container's.
func (d *dockerCluster) SaveLogs(ctx context.Context, dir string) error {
	return forEach(d.cfg.Nodes, func(i int) error {
		out, err := run(ctx, "docker", "logs", "--timestamps", d.name(i))
		if err != nil && out == "" {
			return err
		}
		d.mu.Lock()
		earlier := d.replaced[i]
		d.mu.Unlock()
		return os.WriteFile(filepath.Join(dir, fmt.Sprintf("node%d.log", i+1)), []byte(earlier+out+"\n"), 0o644)
	})
}

// Close removes the containers, their volumes and the network.
func (d *dockerCluster) Close(ctx context.Context) error {
	var errs []error
	var names, vols []string
	for i := 0; i < d.cfg.Nodes; i++ {
		names = append(names, d.name(i))
		vols = append(vols, d.name(i))
	}
	if out, err := run(ctx, "docker", append([]string{"rm", "-f", "-v"}, names...)...); err != nil &&
		!strings.Contains(out, "No such container") {
		errs = append(errs, err)
	}
	if out, err := run(ctx, "docker", append([]string{"volume", "rm", "-f"}, vols...)...); err != nil &&
		!strings.Contains(out, "no such volume") {
		errs = append(errs, err)
	}
	if d.network != "" {
		if out, err := run(ctx, "docker", "network", "rm", d.network); err != nil &&
			!strings.Contains(out, "not found") {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

var _ Cluster = (*dockerCluster)(nil)
