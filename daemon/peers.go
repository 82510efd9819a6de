package daemon

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/ringkv/ringkv/bootstrap"
	"github.com/ringkv/ringkv/dht"
)

// PeersFile in the data dir lists the cluster members the node knew when it
// last ran, one /p2p/ multiaddr per line. At start the daemon joins through
// them as well as through its bootstrap list, so a restarted node finds
// its cluster even when its bootstrap peers are down (or it had none).
const PeersFile = "peers"

// peersSaveInterval is how often the member list is saved while running.
const peersSaveInterval = time.Minute

// knownPeers merges the bootstrap list with the saved members, dropping
// duplicates and saved lines that no longer parse.
func knownPeers(dir string, configured []string) []string {
	out := slices.Clone(configured)
	b, err := os.ReadFile(filepath.Join(dir, PeersFile))
	if err != nil {
		return out
	}
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || slices.Contains(out, line) {
			continue
		}
		if _, err := bootstrap.Parse(line); err == nil {
			out = append(out, line)
		}
	}
	return out
}

// savePeers writes the live members' addresses (self excluded).
func (d *Daemon) savePeers() error {
	var lines []string
	for _, m := range d.node.Members() {
		if m.ID == d.host.ID() || !m.State.Live() || m.State == dht.StateLeaving {
			continue
		}
		for _, a := range m.Addrs {
			lines = append(lines, a+"/p2p/"+m.ID.String())
		}
	}
	slices.Sort(lines)
	return writeFileAtomic(filepath.Join(d.cfg.DataDir, PeersFile), []byte(strings.Join(lines, "\n")+"\n"), 0o644)
}
