package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/ringkv/ringkv/dht"
)

var _ dht.Store = (*Badger)(nil)

// Badger is a dht.Store kept in a Badger database. Open it, use it from any
// number of goroutines, Close it once.
type Badger struct {
	dir string // absolute, for messages
	log *slog.Logger
	db  *badger.DB

	gate   gate
	clog   *commitLog // nil without SyncWrites
	vers   *versions
	cache  *recordCache
	commit *committer
	gc     *valueLogGC
	size   diskUsage

	closeOnce sync.Once
	closeErr  error
}

// Open validates cfg, opens (or creates) the store in cfg.Dir and starts its
// committer and value-log GC goroutines. It fails with an error wrapping
// ErrInvalidConfig, ErrUnreadable or ErrLocked when it can tell why.
func Open(cfg Config) (*Badger, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = discardLogger()
	}
	dir := absDir(cfg.Dir)
	if err := checkDir(dir); err != nil {
		return nil, err
	}
	cfg.Dir = dir // immune to a later chdir
	db, err := badger.OpenManaged(cfg.badgerOptions(log))
	if err != nil {
		return nil, openError(dir, err)
	}
	s := &Badger{
		dir:  dir,
		log:  log,
		db:   db,
		size: diskUsage{dir: dir},
	}
	s.gate.init()
	s.vers = newVersions(db)
	s.cache = newRecordCache(cfg.RecordCacheSize)
	if cfg.SyncWrites {
		s.clog, err = openCommitLog(dir, cfg.CommitLogSegmentSize, log, s.replay)
	} else {
		err = discardCommitLog(dir, log, s.replay)
	}
	if err != nil {
		return nil, errors.Join(fmt.Errorf("store: open %s: %w", dir, err), db.Close())
	}
	s.commit = newCommitter(db, s.clog, s.vers, s.cache, log)
	s.gc = startValueLogGC(db, s.clog, cfg.GCInterval, log)
	n, err := s.stripBadgerTTLs(context.Background())
	if err != nil {
		return nil, errors.Join(fmt.Errorf("store: open %s: %w", dir, err), s.Close())
	}
	if n > 0 {
		log.Info("records an earlier release stored with a Badger TTL now carry their expiry per version", "records", n)
	}
	log.Debug("store opened", "dir", dir, "sync_writes", cfg.SyncWrites)
	return s, nil
}

// Close waits for calls in progress to return, stops the background
// goroutines, commits queued writes and closes Badger. Calls that start
// during or after Close fail with ErrClosed. Close is idempotent: later calls
// wait for the first and return its result. It must not be called from
// inside a Scan callback.
func (s *Badger) Close() error { return s.close(true) }

// close is Close; with releaseLog false it leaves the commit log's
// segments in place, as a crash would.
func (s *Badger) close(releaseLog bool) error {
	s.closeOnce.Do(func() {
		s.gate.close()
		s.gc.stop()
		s.commit.stop()
		var logErr error
		if s.clog != nil {
			logErr = s.clog.stop()
		}
		if err := s.db.Close(); err != nil {
			s.closeErr = fmt.Errorf("store: close %s: %v", s.dir, err)
		} else if s.clog != nil && releaseLog {
			logErr = errors.Join(logErr, s.clog.closed())
		}
		if s.closeErr == nil && logErr != nil {
			s.closeErr = fmt.Errorf("store: close %s: commit log: %v", s.dir, logErr)
		}
		s.log.Debug("store closed", "dir", s.dir, "err", s.closeErr)
	})
	return s.closeErr
}

// replay commits the mutations of one commit-log record to Badger, in one
// transaction if they fit (they did when they were logged, unless the
// memtable size has shrunk since).
func (s *Badger) replay(muts []mutation) error {
	for len(muts) > 0 {
		txn := s.vers.newWrite()
		n := 0
		for ; n < len(muts); n++ {
			if err := addMutations(txn, muts[n:n+1]); err != nil {
				if n == 0 || !errors.Is(err, badger.ErrTxnTooBig) {
					txn.Discard()
					return err
				}
				break
			}
		}
		ts := s.vers.next()
		err := txn.CommitAt(ts, nil)
		s.vers.committed(ts)
		if err != nil {
			return err
		}
		muts = muts[n:]
	}
	return nil
}

// Get returns the record under key, or dht.ErrNotFound if there is none. Undecodable bytes on disk give an error
// wrapping dht.ErrCorruptRecord.
func (s *Badger) Get(ctx context.Context, key []byte) (dht.Record, error) {
	if err := ctx.Err(); err != nil {
		return dht.Record{}, err
	}
	bk, err := dataKey(key)
	if err != nil {
		return dht.Record{}, err
	}
	if !s.gate.enter() {
		return dht.Record{}, errUseAfterClose
	}
	defer s.gate.exit()
	if rec, ok := s.cache.get(bk); ok {
		return rec, nil
	}
	var rec dht.Record
	err = s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(bk)
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error {
			rec, err = decodeRecord(key, v)
			return err
		})
	})
	if err != nil {
		if errors.Is(err, dht.ErrCorruptRecord) {
			return dht.Record{}, err
		}
		return dht.Record{}, opError("get", err)
	}
	return rec, nil
}

// Put stores rec under key, replacing what was there.
func (s *Badger) Put(ctx context.Context, key []byte, rec dht.Record) error {
	m, err := s.setMutation(key, rec)
	if err != nil {
		return err
	}
	return s.submit(ctx, []mutation{m})
}

// PutBatch stores all entries atomically in one commit: after a crash either
// all or none are there. A batch over MaxBatchBytes fails with
// ErrBatchTooLarge and writes nothing. Later entries win over earlier ones
// with the same key.
func (s *Badger) PutBatch(ctx context.Context, entries []dht.Entry) error {
	if len(entries) == 0 {
		return ctx.Err()
	}
	muts := make([]mutation, len(entries))
	for i, e := range entries {
		m, err := s.setMutation(e.Key, e.Record)
		if err != nil {
			return fmt.Errorf("%w (batch entry %d)", err, i)
		}
		muts[i] = m
	}
	return s.submit(ctx, muts)
}

// PutEach stores each entry as Put would: each one atomic, all queued for
// the group committer at once, so they share commits without a goroutine
// per entry. errs[i] is entry i's result.
func (s *Badger) PutEach(ctx context.Context, entries []dht.Entry) []error {
	errs := make([]error, len(entries))
	fail := func(err error) []error {
		for i := range errs {
			if errs[i] == nil {
				errs[i] = err
			}
		}
		return errs
	}
	if err := ctx.Err(); err != nil {
		return fail(err)
	}
	reqs := make([]*commitReq, len(entries))
	for i, e := range entries {
		m, err := s.setMutation(e.Key, e.Record)
		if err != nil {
			errs[i] = err
			continue
		}
		reqs[i] = newCommitReq([]mutation{m})
	}
	if !s.gate.enter() {
		return fail(errUseAfterClose)
	}
	defer s.gate.exit()
	for i, r := range reqs {
		if r != nil {
			if err := s.commit.enqueue(ctx, r); err != nil {
				errs[i] = err
				reqs[i] = nil
			}
		}
	}
	for i, r := range reqs {
		if r != nil {
			errs[i] = s.commit.wait(ctx, r)
		}
	}
	return errs
}

// Delete removes key. Deleting an absent key is not an error.
func (s *Badger) Delete(ctx context.Context, key []byte) error {
	bk, err := dataKey(key)
	if err != nil {
		return err
	}
	return s.submit(ctx, []mutation{{key: bk, del: true}})
}

// MaxBatchBytes is Badger's limit on one commit (15% of MemTableSize). Badger
// counts each entry as its key plus ~13 bytes plus its encoded record when
// that is below Config.ValueThreshold, or as its key plus ~25 bytes when the
// record goes to the value log. A PutBatch over the limit fails with
// ErrBatchTooLarge; callers streaming many records split them well below it.
func (s *Badger) MaxBatchBytes() int64 { return s.db.MaxBatchSize() }

// CommitStats returns how many Badger commits the group committer made,
// how many write requests they carried, and how long they took in all:
// the committer is saturated when that time grows as fast as the clock.
func (s *Badger) CommitStats() (commits, requests int64, busy time.Duration) {
	return s.commit.commits.Load(), s.commit.requests.Load(), time.Duration(s.commit.busy.Load())
}

// CacheStats returns how many Gets the record cache answered and how many
// went to Badger since Open.
func (s *Badger) CacheStats() (hits, misses int64) {
	return s.cache.hits.Load(), s.cache.misses.Load()
}

// Size returns the bytes the store's files occupy on disk (blocks
// allocated, so sparse preallocated files count for what they use). It is
// recomputed at most once a second.
func (s *Badger) Size() int64 { return s.size.get() }

// setMutation validates and encodes one Put, with a copy of rec for the
// record cache when it is small enough to be cached.
func (s *Badger) setMutation(key []byte, rec dht.Record) (mutation, error) {
	m, err := setMutation(key, rec)
	if err != nil {
		return mutation{}, err
	}
	m.rec, _ = s.cache.cacheable(m.key, rec)
	return m, nil
}

// setMutation validates and encodes one Put.
func setMutation(key []byte, rec dht.Record) (mutation, error) {
	bk, err := dataKey(key)
	if err != nil {
		return mutation{}, err
	}
	val, err := encodeRecord(rec)
	if err != nil {
		return mutation{}, err
	}
	return mutation{key: bk, value: val}, nil
}

// submit runs muts through the group committer as one atomic commit.
func (s *Badger) submit(ctx context.Context, muts []mutation) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if !s.gate.enter() {
		return errUseAfterClose
	}
	defer s.gate.exit()
	return s.commit.submit(ctx, muts)
}

// gate admits calls until it is closed, and lets close wait for the calls
// it admitted. Unlike an RWMutex, a call made from inside another (a Get in
// a Scan callback) never deadlocks against a pending close: it is refused.
type gate struct {
	mu     sync.Mutex
	closed bool
	active int
	idle   *sync.Cond // signalled when active drops to 0 after close
}

func (g *gate) init() { g.idle = sync.NewCond(&g.mu) }

// enter admits a call, or reports false once the gate is closed.
func (g *gate) enter() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.active++
	return true
}

// exit ends a call admitted by enter.
func (g *gate) exit() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.active--
	if g.closed && g.active == 0 {
		g.idle.Broadcast()
	}
}

// close refuses new calls and waits for admitted ones to exit.
func (g *gate) close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.closed = true
	for g.active > 0 {
		g.idle.Wait()
	}
}
