package store

import (
	"math"
	"sync"

	"github.com/dgraph-io/badger/v4"
)

// Versions.
//
// Badger runs in managed mode: the store, not Badger's oracle, assigns
// commit timestamps. In Badger's default mode every read transaction
// registers its read timestamp with a watermark goroutine and waits for
// commits in flight, and every commit registers with another, each a
// channel handoff to a goroutine of Badger's; on a small machine those
// handoffs were the largest share of a replica read's and a commit's
// scheduling delay (go tool trace -pprof=sched). Dgraph runs Badger the
// same way, with its own timestamps.
//
// The committer is the only writer, so commit timestamps are simply
// consecutive: each group commit takes last+1, and once it returns every
// commit up to last is visible. A point read (Get, Count) reads the newest
// version of each key (read timestamp MaxUint64); a Scan reads the
// snapshot at last, so writes that commit during it are not seen.
//
// Compaction drops versions shadowed by a newer one only below the
// discard timestamp, which the store moves forward after each commit:
// to last, or to the oldest snapshot a Scan still reads, so a scan never
// loses a key to a compaction that runs under it.

// versions hands out commit timestamps and tracks the snapshots in use.
type versions struct {
	db *badger.DB

	mu      sync.Mutex
	last    uint64         // newest committed timestamp; guarded by mu
	discard uint64         // last discard timestamp given to Badger; guarded by mu
	scans   map[uint64]int // snapshot timestamp -> scans reading it; guarded by mu
}

func newVersions(db *badger.DB) *versions {
	v := &versions{db: db, last: db.MaxVersion(), scans: map[uint64]int{}}
	v.discard = v.last
	db.SetDiscardTs(v.discard)
	return v
}

// next is the timestamp of the next commit. Only the committer calls it.
func (v *versions) next() uint64 {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.last + 1
}

// committed records that the commit at ts returned (successfully or not:
// a failed commit's timestamp is never reused) and moves the discard
// timestamp forward.
func (v *versions) committed(ts uint64) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.last = max(v.last, ts)
	discard := v.last
	for s := range v.scans {
		discard = min(discard, s)
	}
	if discard > v.discard {
		v.discard = discard
		v.db.SetDiscardTs(discard)
	}
}

// snapshot opens a read-only transaction at the newest committed state and
// holds compaction back from it until done is called.
func (v *versions) snapshot() (txn *badger.Txn, done func()) {
	v.mu.Lock()
	ts := v.last
	v.scans[ts]++
	v.mu.Unlock()
	txn = v.db.NewTransactionAt(ts, false)
	return txn, func() {
		txn.Discard()
		v.mu.Lock()
		if v.scans[ts]--; v.scans[ts] == 0 {
			delete(v.scans, ts)
		}
		v.mu.Unlock()
	}
}

// newWrite opens an update transaction; commit it with CommitAt.
func (v *versions) newWrite() *badger.Txn {
	return v.db.NewTransactionAt(math.MaxUint64, true)
}
