package daemon

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ringkv/ringkv/dht"
)

// LastUpFile in the data dir holds the last time the daemon knew itself to
// be running and in touch with its cluster (RFC 3339, UTC).
//
// A node down for longer than its peers keep a dead member
// (membership.Config.DeadReapTimeout, an hour on a LAN) is forgotten: its
// ranges pass to other nodes, and once those hold a key's tombstone and
// the grace has passed they collect it. Started on its old data, the node
// would hand those deleted values back (Cassandra's gc_grace_seconds
// warning, which Cassandra leaves to the operator). So the daemon refuses
// to start on a data dir whose last-up time is older than nine tenths of
// that (the tenth covers a start's own duration and the failure detector's
// delay), unless told to (AllowStaleRejoin).
//
// The time is written once the daemon has started, then every
// lastUpInterval and when it stops, but only while the node sees a live
// peer, or is alone (no peers to join, none seen): a node cut off from
// every member it knows may be reaped by them, and the time it was last
// in touch is what counts.
const LastUpFile = "last-up"

// ErrStaleDataDir: the data dir was last up too long ago to rejoin safely.
var ErrStaleDataDir = errors.New("daemon: stale data dir")

// AllowStaleRejoin starts the daemon on its data dir however long ago it
// last ran.
func AllowStaleRejoin() Option { return func(d *Daemon) { d.allowStale = true } }

// lastUpInterval is how often the last-up time is refreshed.
func lastUpInterval(reap time.Duration) time.Duration { return min(time.Minute, reap/10) }

// staleAfter is how long ago a data dir may have been up and still start.
func staleAfter(reap time.Duration) time.Duration { return reap - reap/10 }

// futureSlack is how far ahead of the clock a last-up time may lie before
// the daemon warns that the clock went back.
const futureSlack = 10 * time.Second

// checkLastUp refuses a data dir whose last-up time is more than
// staleAfter(reap) ago, unless its store directory is empty. A data dir
// without the file (new, or from a release before it) passes.
func (d *Daemon) checkLastUp(reap time.Duration) error {
	dir := d.cfg.DataDir
	path := filepath.Join(dir, LastUpFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return dataDirErr(dir, err)
	}
	last, err := time.Parse(time.RFC3339Nano, strings.TrimSpace(string(b)))
	if err != nil {
		return fmt.Errorf("%w: %s does not hold a time (%.40q); if this node ran within the last %v, remove that file and start again, otherwise move %s aside first",
			ErrDataDir, path, strings.TrimSpace(string(b)), staleAfter(reap), filepath.Join(dir, StoreDir))
	}
	down := d.clock.Now().Sub(last)
	if down < -futureSlack {
		d.log.Warn("the data dir was last up later than the clock says it is now: check the clock (NTP) before trusting this start",
			"last_up", last.Format(time.RFC3339), "now", d.clock.Now().UTC().Format(time.RFC3339))
	}
	if down <= staleAfter(reap) {
		return nil
	}
	if empty, err := dirEmpty(filepath.Join(dir, StoreDir)); err != nil || empty {
		return err
	}
	if d.allowStale {
		d.log.Warn("starting on a data dir last up longer ago than its peers keep a dead member, as asked: deleted keys may come back",
			"last_up", last.Format(time.RFC3339), "down", down.Round(time.Second), "dead_reap_timeout", reap)
		return nil
	}
	return fmt.Errorf("%w: %s was last up %v ago (%s), and peers forget a dead member after %v, so keys deleted meanwhile could come back from its data; "+
		"move %s aside and start again with bootstrap peers set (the node rejoins and pulls its ranges from them), or pass --allow-stale-rejoin to start on this data",
		ErrStaleDataDir, dir, down.Round(time.Second), last.Format(time.RFC3339), reap, filepath.Join(dir, StoreDir))
}

// dirEmpty says whether dir has no entries; a missing dir is empty.
func dirEmpty(dir string) (bool, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return true, nil
	}
	if err != nil {
		return false, dataDirErr(dir, err)
	}
	return len(entries) == 0, nil
}

// lastUp is where LastUpFile goes and what decides when to write it.
// Start, then the periodic refresh, then Shutdown use it, one after
// another.
type lastUp struct {
	path string
	// expectPeers: the node started with peers to join (bootstrap peers or
	// saved members); sawPeer: it has since listed another member.
	expectPeers, sawPeer bool
	failing              bool // the last write failed (logged once)
}

// inTouch says whether a node whose member list is members counts as up:
// it sees another member live, or it is alone, having neither looked for
// nor seen another. A node whose dead peers were reaped is not alone.
func (u *lastUp) inTouch(self peer.ID, members []dht.Member) bool {
	for _, m := range members {
		if m.ID == self {
			continue
		}
		u.sawPeer = true
		if m.State.Live() {
			return true
		}
	}
	return !u.sawPeer && !u.expectPeers
}

// saveLastUp records now as the last time the node was up.
func (d *Daemon) saveLastUp() {
	now := d.clock.Now().UTC().Format(time.RFC3339Nano)
	err := writeFileAtomic(d.lastUp.path, []byte(now+"\n"), 0o644)
	switch {
	case err != nil && !d.lastUp.failing:
		d.log.Warn("cannot record that the node is up; if it stays down for long, a restart may be refused as stale",
			"file", d.lastUp.path, "err", err)
	case err == nil && d.lastUp.failing:
		d.log.Info("recording that the node is up again", "file", d.lastUp.path)
	}
	d.lastUp.failing = err != nil
}

// refreshLastUp saves the last-up time if the node is in touch.
func (d *Daemon) refreshLastUp() {
	if d.lastUp.inTouch(d.self, d.node.Members()) {
		d.saveLastUp()
	}
}
