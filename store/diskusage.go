package store

import (
	"io/fs"
	"path/filepath"
	"sync"
	"time"
)

// diskUsageTTL is how long a computed disk usage is reused. Size is called
// for load reports on every gossip round; a large store has thousands of
// table files, so walking them on every call would be wasteful.
const diskUsageTTL = time.Second

// diskUsage measures the bytes the files under dir occupy.
type diskUsage struct {
	dir string

	mu    sync.Mutex
	bytes int64
	at    time.Time // when bytes was computed; zero before the first walk
}

// get returns the cached figure, recomputing it once it is diskUsageTTL old.
func (d *diskUsage) get() int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.at.IsZero() || time.Since(d.at) >= diskUsageTTL {
		d.bytes = walkUsage(d.dir)
		d.at = time.Now()
	}
	return d.bytes
}

// walkUsage sums the allocated size of every regular file under dir. Files
// that vanish during the walk (compaction deletes tables) are skipped.
func walkUsage(dir string) int64 {
	var total int64
	_ = filepath.WalkDir(dir, func(_ string, e fs.DirEntry, err error) error {
		if err != nil || !e.Type().IsRegular() {
			return nil
		}
		info, err := e.Info()
		if err != nil {
			return nil
		}
		total += allocated(info)
		return nil
	})
	return total
}
