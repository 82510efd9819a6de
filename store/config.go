package store

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/ringkv/ringkv/dht"
)

// Sizes used by the defaults and the limits below.
const (
	kib = 1 << 10
	mib = 1 << 20
)

// Limits Badger imposes that Validate checks up front, so a bad flag fails at
// startup with a clear message instead of deep inside Badger.
const (
	// badgerMaxValueThreshold is Badger's ceiling on ValueThreshold.
	badgerMaxValueThreshold = 1 * mib
	// badgerMaxVlogFileSize is Badger's exclusive ceiling on ValueLogFileSize
	// (the value log is mmapped with a uint32 offset).
	badgerMaxVlogFileSize = 2 << 30
	// vlogHeadroom is what a value-log file needs beyond the largest record:
	// the key, the entry header and the checksum.
	vlogHeadroom = 1 * mib
)

// Config configures a Badger store. DefaultConfig fills every field; Open
// calls Validate.
type Config struct {
	// Dir is the directory holding the Badger files (LSM tables, value log,
	// manifest, lock). It is created with mode 0700 if missing. Required.
	Dir string

	// SyncWrites makes Put, PutBatch and Delete durable before they return:
	// each commit is appended to the store's commit log and fdatasynced
	// (see commitlog.go). Default true. With false a crash of the machine
	// (not of the process) can lose the last writes; the store stays
	// consistent either way. Concurrent writes share one commit and one
	// fdatasync (see commit.go), so the cost of true falls as concurrency
	// rises.
	SyncWrites bool

	// CommitLogSegmentSize is the size of one commit-log segment, in bytes.
	// Default 64 MiB. The log keeps the segments written since Badger last
	// made its state durable, usually two; a segment is checkpointed when the
	// log moves on from it, so smaller segments mean more frequent Badger
	// syncs and a shorter replay after a crash. At least 64 KiB.
	CommitLogSegmentSize int64

	// MemTableSize is the size of one in-memory table, in bytes. Default
	// 16 MiB (Badger's is 64 MiB). Larger tables mean fewer, bigger L0 flushes
	// and larger PutBatch limits (a batch may use ~15% of a memtable), at the
	// price of NumMemtables times this much memory under write load.
	MemTableSize int64

	// NumMemtables is how many memtables may exist at once: the active one
	// plus those waiting to be flushed. Default 2 (Badger's is 5). Fewer
	// bounds memory; more absorbs longer write bursts before writes stall on
	// flushes. At least 1.
	NumMemtables int

	// NumLevelZeroTables is the number of L0 tables that triggers compaction
	// into L1; writes stall at three times this number. Default 4 (Badger's
	// is 5, stall 15). Lower keeps reads fast and the disk tidy; higher
	// absorbs write bursts. At least 1.
	NumLevelZeroTables int

	// BlockCacheSize is the cache of decompressed LSM table blocks, in bytes.
	// Default 8 MiB (Badger's is 256 MiB). Larger speeds up reads of hot keys
	// whose working set exceeds it. Must be positive: tables are compressed
	// and Badger needs the cache to read them.
	BlockCacheSize int64

	// IndexCacheSize bounds the memory held by table indexes and bloom
	// filters, in bytes. Default 4 MiB. 0 keeps every index in memory
	// (Badger's default): fastest lookups, but memory grows with the data.
	IndexCacheSize int64

	// RecordCacheSize bounds the cache of decoded records of recently
	// written keys, in bytes (see cache.go). Default 16 MiB. It spares a
	// read-merge-write and a read of a hot key the Badger lookup and the
	// decode; records above 1/256 of it are not cached. 0 disables it.
	RecordCacheSize int64

	// ValueLogFileSize is the size at which a value-log file is rotated, in
	// bytes. Default 128 MiB (Badger's is 1 GiB). It must hold the largest
	// record (dht.MaxRecordSize plus a little), and be below 2 GiB. Value-log
	// GC rewrites one file at a time, so smaller files reclaim space in
	// smaller steps.
	ValueLogFileSize int64

	// ValueThreshold is the record size, in bytes, from which a record is
	// kept in the value log and only a pointer in the LSM tree. Default 4 KiB.
	// Records below it live in the LSM tree: faster reads and scans, but
	// compaction rewrites them. Records above it cost one more read and are
	// reclaimed by value-log GC. At most 1 MiB and at most 15% of
	// MemTableSize.
	ValueThreshold int64

	// NumCompactors is the number of concurrent compaction workers. Default 2
	// (Badger's is 4). 0 disables compaction (only for tests and bulk
	// loads); 1 is not allowed by Badger.
	NumCompactors int

	// GCInterval is the period of value-log garbage collection; each run
	// rewrites value-log files that are at least half garbage until none is
	// left. Default 5m. 0 disables it. Shorter reclaims disk sooner at the
	// cost of background I/O.
	GCInterval time.Duration

	// Logger receives the store's and Badger's messages: Badger's chatty
	// info and debug lines at debug, its warnings and errors at warn.
	// Default slog.Default(); nil discards.
	Logger *slog.Logger
}

// DefaultConfig returns a Config for a store in dir, sized for a daemon that
// shares its host. Measured (TestMemoryRSS): opening an empty store adds
// about 2 MiB to the process's RSS (12 MiB in all); after 32 MiB written and
// scanned the process holds about 72 MiB. Badger's defaults reach 320 MiB
// after 100 MiB of writes.
func DefaultConfig(dir string) Config {
	return Config{
		Dir:                  dir,
		SyncWrites:           true,
		CommitLogSegmentSize: 64 * mib,
		MemTableSize:         16 * mib,
		NumMemtables:         2,
		NumLevelZeroTables:   4,
		BlockCacheSize:       8 * mib,
		IndexCacheSize:       4 * mib,
		RecordCacheSize:      16 * mib,
		ValueLogFileSize:     128 * mib,
		ValueThreshold:       4 * kib,
		NumCompactors:        2,
		GCInterval:           5 * time.Minute,
		Logger:               slog.Default(),
	}
}

// Validate reports the first problem with c, wrapping ErrInvalidConfig.
func (c Config) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
	}
	switch {
	case c.Dir == "":
		return bad("Dir is empty")
	case c.CommitLogSegmentSize < 64*kib:
		return bad("CommitLogSegmentSize %d is below 64 KiB", c.CommitLogSegmentSize)
	case c.MemTableSize < 1*mib:
		return bad("MemTableSize %d is below 1 MiB", c.MemTableSize)
	case c.NumMemtables < 1:
		return bad("NumMemtables %d is below 1", c.NumMemtables)
	case c.NumLevelZeroTables < 1:
		return bad("NumLevelZeroTables %d is below 1", c.NumLevelZeroTables)
	case c.BlockCacheSize <= 0:
		return bad("BlockCacheSize %d must be positive (tables are compressed)", c.BlockCacheSize)
	case c.IndexCacheSize < 0:
		return bad("IndexCacheSize %d is negative", c.IndexCacheSize)
	case c.RecordCacheSize < 0:
		return bad("RecordCacheSize %d is negative", c.RecordCacheSize)
	case c.ValueLogFileSize < dht.MaxRecordSize+vlogHeadroom:
		return bad("ValueLogFileSize %d cannot hold a record of dht.MaxRecordSize (%d) bytes",
			c.ValueLogFileSize, dht.MaxRecordSize)
	case c.ValueLogFileSize >= badgerMaxVlogFileSize:
		return bad("ValueLogFileSize %d must be below 2 GiB", c.ValueLogFileSize)
	case c.ValueThreshold < 1 || c.ValueThreshold > badgerMaxValueThreshold:
		return bad("ValueThreshold %d is outside [1, 1 MiB]", c.ValueThreshold)
	case c.ValueThreshold > maxBatchBytes(c.MemTableSize):
		return bad("ValueThreshold %d exceeds 15%% of MemTableSize (%d)",
			c.ValueThreshold, maxBatchBytes(c.MemTableSize))
	case c.NumCompactors < 0 || c.NumCompactors == 1:
		return bad("NumCompactors %d must be 0 or at least 2", c.NumCompactors)
	case c.GCInterval < 0:
		return bad("GCInterval %v is negative", c.GCInterval)
	}
	return nil
}

// maxBatchBytes is Badger's limit on one transaction, derived from the
// memtable size (Badger's checkAndSetOptions).
func maxBatchBytes(memTableSize int64) int64 { return memTableSize * 15 / 100 }

// badgerOptions translates c into Badger's options. c must be valid.
func (c Config) badgerOptions(log *slog.Logger) badger.Options {
	return badger.DefaultOptions(c.Dir).
		// Durability is the commit log's (commitlog.go).
		WithSyncWrites(false).
		WithMemTableSize(c.MemTableSize).
		WithNumMemtables(c.NumMemtables).
		WithNumLevelZeroTables(c.NumLevelZeroTables).
		WithNumLevelZeroTablesStall(3 * c.NumLevelZeroTables).
		WithBlockCacheSize(c.BlockCacheSize).
		WithIndexCacheSize(c.IndexCacheSize).
		WithValueLogFileSize(c.ValueLogFileSize).
		WithValueThreshold(c.ValueThreshold).
		WithNumCompactors(c.NumCompactors).
		// Every write is a blind Set or Delete, so there is nothing to
		// conflict with; tracking read sets would only cost memory.
		WithDetectConflicts(false).
		// Badger's expvar metrics are process-global and keyed by directory;
		// the daemon exports its own Prometheus metrics.
		WithMetricsEnabled(false).
		WithNumVersionsToKeep(1).
		WithLogger(newBadgerLogger(log))
}
