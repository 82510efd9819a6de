package daemon

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// LastUpFile in the data dir holds the last time the daemon knew itself to
// be running (RFC 3339, UTC): written once it has started, every
// lastUpInterval while it runs, and when it stops.
//
// A node down for longer than its peers keep a dead member
// (membership.Config.DeadReapTimeout, an hour on a LAN) is forgotten: its
// ranges pass to other nodes, and once those hold a key's tombstone and
// the grace has passed they collect it. Started on its old data, the node
// would hand those deleted values back (Cassandra's gc_grace_seconds
// warning, which Cassandra leaves to the operator). So the daemon refuses
// to start on a data dir whose last-up time is older than that, unless
// told to (AllowStaleRejoin).
const LastUpFile = "last-up"

// ErrStaleDataDir: the data dir was last up longer ago than a dead member
// is kept.
var ErrStaleDataDir = errors.New("daemon: stale data dir")

// AllowStaleRejoin starts the daemon on its data dir however long ago it
// last ran.
func AllowStaleRejoin() Option { return func(d *Daemon) { d.allowStale = true } }

// lastUpInterval is how often the last-up time is refreshed: often enough
// that a crash loses a small part of reap, the time it is checked against.
func lastUpInterval(reap time.Duration) time.Duration { return min(time.Minute, reap/10) }

// checkLastUp refuses a data dir whose store holds data and whose last-up
// time is more than reap ago. A data dir without the file (new, or from a
// release before it) passes.
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
		return fmt.Errorf("%w: %s holds %q, not a time; if this node's data is current, remove the file and start again",
			ErrDataDir, path, strings.TrimSpace(string(b)))
	}
	down := d.clock.Now().Sub(last)
	if down <= reap {
		return nil
	}
	if empty, err := dirEmpty(filepath.Join(dir, StoreDir)); err != nil || empty {
		return err
	}
	if d.allowStale {
		d.log.Warn("starting on a data dir last up longer ago than peers keep a dead member, as asked: deleted keys may come back",
			"last_up", last.Format(time.RFC3339), "down", down.Round(time.Second), "dead_reap_timeout", reap)
		return nil
	}
	return fmt.Errorf("%w: %s was last up %s ago (%s), longer than the %s after which peers forget a dead member, so keys deleted meanwhile could come back from its data; "+
		"start the node on an empty data dir (it rejoins under a new peer ID and takes its ranges from its peers), or pass --allow-stale-rejoin to start on this one",
		ErrStaleDataDir, dir, down.Round(time.Second), last.Format(time.RFC3339), reap)
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

// saveLastUp records now as the last time the daemon was up.
func (d *Daemon) saveLastUp() error {
	now := d.clock.Now().UTC().Format(time.RFC3339Nano)
	return writeFileAtomic(filepath.Join(d.cfg.DataDir, LastUpFile), []byte(now+"\n"), 0o644)
}

// lastUpLoop refreshes the last-up time every interval.
func (d *Daemon) lastUpLoop(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := d.saveLastUp(); err != nil {
				d.log.Warn("recording that the node is up", "file", LastUpFile, "err", err)
			}
		}
	}
}
