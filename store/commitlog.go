package store

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Commit log.
//
// With Config.SyncWrites the store makes writes durable in a log of its
// own and runs Badger without SyncWrites. Badger's durable path costs two
// msyncs per commit: the memtable's write-ahead log, and the value log even
// when no value went into it. Each msync of a shared mapping is a device
// flush, and it write-protects the pages it cleaned, so the next commit
// faults them back in and the kernel shoots down their TLB entries on every
// core. Writing a record into an already allocated file and fdatasyncing it
// costs one flush and no metadata: 0.13 ms idle on the machine of the
// README's Performance section, against 0.41 ms for a write to a mapping
// and the two msyncs. A synced Put of the store alone takes a quarter less
// time, 50 concurrent writers make 1.8x the puts/s, and three daemons
// answer a sequential put a fifth sooner.
//
// Each Badger transaction the committer makes is first appended to the log
// as one record and fdatasynced, then committed to Badger. The log is a
// series of segment files, Dir/commitlog/<sequence number, 16 hex digits>.log.
// A record is
//
//	length  uint32, little-endian: the payload's length; 0 ends the segment
//	crc     uint32, little-endian: CRC-32C of the segment's sequence
//	        number (8 bytes, little-endian) followed by the payload
//	payload uvarint mutation count, then per mutation an op byte (0 set,
//	        1 delete), uvarint key length, key, and for a set uvarint
//	        value length, value
//
// Segments are filled with zeros ahead of the records, a chunk at a time,
// so that most fdatasyncs write no file size.
//
// Checkpoints. A segment is kept until Badger holds its records durably.
// Once Badger has applied a record of a newer segment, a background
// checkpoint makes what Badger holds durable (syncBadger) and then
// releases the older segments, oldest first. The newest released segment
// is renamed to the next sequence number and written over, so that the
// log's fdatasyncs find its blocks allocated; records from its earlier
// life fail the CRC, which covers the sequence number.
//
// Recovery. Open replays every segment in order, each up to its first
// record that is cut short or fails its CRC, and commits each record to
// Badger as one transaction. Records Badger already holds are written
// again with the same values, and a key written in several records ends
// with the last, so replay is idempotent. A machine crash can tear only the
// record being written, which was never acknowledged.

const (
	// commitLogDir is the log's directory inside the store's.
	commitLogDir = "commitlog"
	// recordHeaderSize is the length and the CRC.
	recordHeaderSize = 8
	// checkpointRetry is how long the log waits to retry a checkpoint
	// that failed.
	checkpointRetry = time.Second
	// fillChunk is how far ahead of the records a new segment is filled
	// with zeros. An fdatasync after a write that grew the file must also
	// write the file's new size (a journal commit on ext4), one after a
	// write into written blocks need not: 0.20 ms against 0.13 ms on the
	// reference machine. Filling ahead makes one fdatasync in a chunk pay.
	fillChunk = 1 * mib
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// errCommitLogFailed marks a log that could not be written. The records
// after a failed write or fdatasync are not known to be durable, so the
// store refuses writes until it is reopened.
var errCommitLogFailed = errors.New("the commit log cannot be written")

// commitLog is the log of a store opened with SyncWrites. append is called
// only by the committer; the checkpoint runs on its own goroutine.
type commitLog struct {
	dir       string // the log's directory
	badgerDir string
	segSize   int64
	log       *slog.Logger

	// Owned by the committer.
	f      *os.File // current segment
	off    int64    // where the next record goes
	filled int64    // the segment's size: bytes written, by records or zeros
	buf    []byte   // record being encoded
	failed error    // set once a write or sync failed

	mu   sync.Mutex
	seq  uint64   // current segment; guarded by mu
	segs []uint64 // segments on disk not yet released, oldest first, current last; guarded by mu
	// applied is the segment of the newest record Badger has applied:
	// every record of the segments before it is in Badger. Guarded by mu.
	applied uint64
	// vlogFrom is the lowest value-log file id that may hold writes not yet
	// fsynced (see syncBadger); guarded by durMu.
	durMu    sync.Mutex
	vlogFrom uint32
	// syncBadgerFn is syncBadger, but for tests that make it fail; guarded
	// by durMu.
	syncBadgerFn func(dir string, vlogFrom uint32) (uint32, error)

	wake     chan struct{} // buffered 1: a checkpoint is due
	quit     chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup
}

// segmentPath is the file of segment seq.
func (l *commitLog) segmentPath(seq uint64) string { return segmentPath(l.dir, seq) }

func segmentPath(dir string, seq uint64) string {
	return filepath.Join(dir, fmt.Sprintf("%016x.log", seq))
}

// listSegments returns the sequence numbers of the segments in dir, in
// order.
func listSegments(dir string) ([]uint64, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var seqs []uint64
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".log")
		if !ok || len(name) != 16 || !e.Type().IsRegular() {
			continue
		}
		seq, err := strconv.ParseUint(name, 16, 64)
		if err != nil {
			continue
		}
		seqs = append(seqs, seq)
	}
	slices.Sort(seqs)
	return seqs, nil
}

// openCommitLog opens the log in storeDir, creating it if missing, and
// replays its records through apply in order. The log then writes to the
// newest segment if replay found no record in it, and to a new segment
// otherwise.
func openCommitLog(storeDir string, segSize int64, log *slog.Logger,
	apply func([]mutation) error) (*commitLog, error) {
	l := &commitLog{
		dir:          filepath.Join(storeDir, commitLogDir),
		badgerDir:    storeDir,
		segSize:      segSize,
		log:          log,
		syncBadgerFn: syncBadger,
		wake:         make(chan struct{}, 1),
		quit:         make(chan struct{}),
	}
	if err := os.MkdirAll(l.dir, 0o700); err != nil {
		return nil, fmt.Errorf("commit log: %w", err)
	}
	if err := syncDir(storeDir); err != nil {
		return nil, fmt.Errorf("commit log: %w", err)
	}
	seqs, err := listSegments(l.dir)
	if err != nil {
		return nil, fmt.Errorf("commit log: %w", err)
	}
	records, lastEmpty, err := replayAll(l.dir, seqs, apply)
	if err != nil {
		return nil, err
	}
	if records > 0 {
		log.Info("replayed the commit log", "segments", len(seqs), "records", records)
	}
	l.segs = seqs
	switch {
	case len(seqs) > 0 && lastEmpty:
		err = l.openSegment(seqs[len(seqs)-1])
	case len(seqs) > 0:
		err = l.openSegment(seqs[len(seqs)-1] + 1)
	default:
		err = l.openSegment(1)
	}
	if err != nil {
		return nil, err
	}
	l.applied = l.seq // the replayed records are in Badger
	l.wg.Add(1)
	go l.checkpoints()
	if len(l.segs) > 1 {
		l.kick()
	}
	return l, nil
}

// discardCommitLog is openCommitLog for a store opened without
// SyncWrites: a log left by an earlier run with SyncWrites is replayed,
// made durable in Badger, and removed, oldest segment first, so that it
// cannot be replayed later over newer writes.
func discardCommitLog(storeDir string, log *slog.Logger, apply func([]mutation) error) error {
	dir := filepath.Join(storeDir, commitLogDir)
	seqs, err := listSegments(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("commit log: %w", err)
	}
	records, _, err := replayAll(dir, seqs, apply)
	if err != nil {
		return err
	}
	if _, err := syncBadger(storeDir, 0); err != nil {
		return fmt.Errorf("commit log: %w", err)
	}
	if _, err := removeSegments(dir, seqs, 0); err != nil {
		return fmt.Errorf("commit log: %w", err)
	}
	if err := os.Remove(dir); err != nil {
		return fmt.Errorf("commit log: %w", err)
	}
	log.Info("replayed and removed the commit log (the store is opened without sync writes)",
		"segments", len(seqs), "records", records)
	return syncDir(storeDir)
}

// replayAll replays the segments seqs of dir in order. It returns how many
// records they held and whether the last segment held none.
func replayAll(dir string, seqs []uint64, apply func([]mutation) error) (records int, lastEmpty bool, err error) {
	for _, seq := range seqs {
		n, err := replaySegment(segmentPath(dir, seq), seq, apply)
		if err != nil {
			return records, false, fmt.Errorf("commit log: replay segment %016x: %w", seq, err)
		}
		records += n
		lastEmpty = n == 0
	}
	return records, lastEmpty, nil
}

// replaySegment applies the records of one segment and returns how many
// there were.
func replaySegment(path string, seq uint64, apply func([]mutation) error) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return 0, err
	}
	r := bufio.NewReaderSize(f, 1<<20)
	remaining := info.Size()
	var hdr [recordHeaderSize]byte
	var payload []byte
	n := 0
	for remaining >= recordHeaderSize {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return n, err
		}
		remaining -= recordHeaderSize
		size := int64(binary.LittleEndian.Uint32(hdr[0:4]))
		if size == 0 || size > remaining {
			break
		}
		payload = slices.Grow(payload[:0], int(size))[:size]
		if _, err := io.ReadFull(r, payload); err != nil {
			return n, err
		}
		remaining -= size
		if recordCRC(seq, payload) != binary.LittleEndian.Uint32(hdr[4:8]) {
			break
		}
		muts, err := decodeMutations(payload)
		if err != nil {
			break // a record that passes its CRC but does not parse: stop as at a torn one
		}
		if err := apply(muts); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

func recordCRC(seq uint64, payload []byte) uint32 {
	var s [8]byte
	binary.LittleEndian.PutUint64(s[:], seq)
	return crc32.Update(crc32.Checksum(s[:], castagnoli), castagnoli, payload)
}

// encodeMutations appends the payload of a record holding muts to buf.
func encodeMutations(buf []byte, muts []mutation) []byte {
	buf = binary.AppendUvarint(buf, uint64(len(muts)))
	for _, m := range muts {
		if m.del {
			buf = append(buf, 1)
		} else {
			buf = append(buf, 0)
		}
		buf = binary.AppendUvarint(buf, uint64(len(m.key)))
		buf = append(buf, m.key...)
		if !m.del {
			buf = binary.AppendUvarint(buf, uint64(len(m.value)))
			buf = append(buf, m.value...)
		}
	}
	return buf
}

var errBadPayload = errors.New("malformed commit-log record")

// decodeMutations parses a record's payload. The mutations alias payload.
func decodeMutations(p []byte) ([]mutation, error) {
	count, n := binary.Uvarint(p)
	if n <= 0 || count > uint64(len(p)) {
		return nil, errBadPayload
	}
	p = p[n:]
	bytesOf := func() ([]byte, bool) {
		size, n := binary.Uvarint(p)
		if n <= 0 || size > uint64(len(p)-n) {
			return nil, false
		}
		b := p[n : n+int(size) : n+int(size)]
		p = p[n+int(size):]
		return b, true
	}
	muts := make([]mutation, 0, count)
	for range count {
		if len(p) == 0 || p[0] > 1 {
			return nil, errBadPayload
		}
		m := mutation{del: p[0] == 1}
		p = p[1:]
		var ok bool
		if m.key, ok = bytesOf(); !ok {
			return nil, errBadPayload
		}
		if !m.del {
			if m.value, ok = bytesOf(); !ok {
				return nil, errBadPayload
			}
			if m.value == nil {
				m.value = []byte{} // a set of an empty value is not a delete
			}
		}
		muts = append(muts, m)
	}
	if len(p) != 0 {
		return nil, errBadPayload
	}
	return muts, nil
}

// append makes the mutations of one Badger transaction durable in the log.
func (l *commitLog) append(group []*commitReq) error {
	if l.failed != nil {
		return l.failed
	}
	l.buf = append(l.buf[:0], make([]byte, recordHeaderSize)...)
	for _, r := range group {
		l.buf = encodeMutations(l.buf, r.muts)
	}
	if err := l.write(); err != nil {
		l.failed = fmt.Errorf("%w (%v); restart once the disk is fixed", errCommitLogFailed, err)
		return l.failed
	}
	return nil
}

// write writes the record in buf at the end of the current segment, or of
// a new one if it does not fit, and fdatasyncs it.
func (l *commitLog) write() error {
	payload := l.buf[recordHeaderSize:]
	if l.off > 0 && l.off+int64(len(l.buf)) > l.segSize {
		if err := l.rotate(); err != nil {
			return err
		}
	}
	if end := l.off + int64(len(l.buf)); end > l.filled {
		if err := l.fill(end); err != nil {
			return err
		}
	}
	// Only the committer changes seq, so it reads it without the lock.
	binary.LittleEndian.PutUint32(l.buf[0:4], uint32(len(payload)))
	binary.LittleEndian.PutUint32(l.buf[4:8], recordCRC(l.seq, payload))
	if _, err := l.f.WriteAt(l.buf, l.off); err != nil {
		return err
	}
	if err := fdatasync(l.f); err != nil {
		return err
	}
	l.off += int64(len(l.buf))
	return nil
}

// zeros is what fill writes.
var zeros = make([]byte, fillChunk)

// fill grows the current segment with zeros to the first multiple of
// fillChunk at or after end. The record's fdatasync makes them durable.
func (l *commitLog) fill(end int64) error {
	target := (end + fillChunk - 1) / fillChunk * fillChunk
	for l.filled < target {
		n := min(target-l.filled, int64(len(zeros)))
		if _, err := l.f.WriteAt(zeros[:n], l.filled); err != nil {
			return err
		}
		l.filled += n
	}
	return nil
}

// rotate moves the log to the next segment. Once Badger applies a record
// of it, the segments before it can be checkpointed (see recordApplied).
func (l *commitLog) rotate() error { return l.openSegment(l.seq + 1) }

// recordApplied notes that Badger applied a record of segment seq, and so
// every record before it, and asks for a checkpoint when that completes
// a segment.
func (l *commitLog) recordApplied(seq uint64) {
	l.mu.Lock()
	advanced := seq > l.applied
	if advanced {
		l.applied = seq
	}
	l.mu.Unlock()
	if advanced {
		l.kick()
	}
}

// openSegment makes seq the current segment, reusing its file if a
// checkpoint left one under that name, and makes the file's name durable.
func (l *commitLog) openSegment(seq uint64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	f, err := os.OpenFile(l.segmentPath(seq), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("commit log: %w", err)
	}
	info, err := f.Stat()
	if err == nil {
		err = syncDir(l.dir)
	}
	if err != nil {
		f.Close()
		return fmt.Errorf("commit log: %w", err)
	}
	if l.f != nil {
		l.f.Close()
	}
	l.f, l.off, l.filled, l.seq = f, 0, info.Size(), seq
	if len(l.segs) == 0 || l.segs[len(l.segs)-1] != seq {
		l.segs = append(l.segs, seq)
	}
	return nil
}

func (l *commitLog) kick() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// checkpoints runs a checkpoint when the log asks for one, and again
// after checkpointRetry while one fails.
func (l *commitLog) checkpoints() {
	defer l.wg.Done()
	retry := time.NewTimer(0)
	<-retry.C
	for {
		select {
		case <-l.quit:
			retry.Stop()
			return
		case <-l.wake:
		case <-retry.C:
		}
		l.mu.Lock()
		upTo := l.applied
		l.mu.Unlock()
		if err := l.checkpoint(upTo); err != nil {
			l.log.Warn("commit-log checkpoint failed; retrying", "op", "checkpoint", "err", err.Error())
			retry.Reset(checkpointRetry)
		}
	}
}

// checkpoint makes what Badger holds durable and releases the segments
// before upTo.
func (l *commitLog) checkpoint(upTo uint64) error {
	l.mu.Lock()
	n := 0
	for n < len(l.segs) && l.segs[n] < upTo {
		n++
	}
	l.mu.Unlock()
	if n == 0 {
		return nil
	}
	if err := l.durableBadger(); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.release(n)
}

// release releases the n oldest segments (see removeSegments), keeping
// the newest of them as the segment after the current one. Called with mu
// held.
func (l *commitLog) release(n int) error {
	done, err := removeSegments(l.dir, l.segs[:n], l.seq+1)
	l.segs = l.segs[done:]
	return err
}

// removeSegments removes the segments seqs of dir, oldest first, each
// removal made durable before the next, except that the newest becomes
// segment spare (if spare is not 0 and no file has that name yet), to be
// written over. In that order a crash never leaves a segment without the
// newer ones removed with it: replayed alone, it would write older records
// over newer ones. It stops at the first failure and returns how many it
// removed; the rest stay for a later attempt.
func removeSegments(dir string, seqs []uint64, spare uint64) (int, error) {
	sparePath := segmentPath(dir, spare)
	for i, seq := range seqs {
		path := segmentPath(dir, seq)
		var err error
		if i == len(seqs)-1 && spare != 0 && !fileExists(sparePath) {
			err = os.Rename(path, sparePath)
		} else {
			err = os.Remove(path)
		}
		if err == nil {
			err = syncDir(dir)
		}
		if err != nil {
			return i, fmt.Errorf("release segment %016x: %w", seq, err)
		}
	}
	return len(seqs), nil
}

// durableBadger makes everything Badger has applied so far durable.
func (l *commitLog) durableBadger() error {
	l.durMu.Lock()
	defer l.durMu.Unlock()
	next, err := l.syncBadgerFn(l.badgerDir, l.vlogFrom)
	if err == nil {
		l.vlogFrom = next
	}
	return err
}

// syncBadger makes everything Badger has applied so far durable, without
// Badger's help: Badger runs without SyncWrites, so it writes its
// memtables' write-ahead logs (*.mem) and its value log (*.vlog) through
// mappings that it does not sync until it closes them. An fsync of a file
// writes back the pages written through a mapping too. A memtable whose
// file is gone was flushed into a table, which Badger syncs, with the
// manifest, before it deletes the file. Value-log files are only
// appended to, the newest one alone, so those older than the newest at
// the last call (vlogFrom) are durable already. It returns the vlogFrom
// of the next call.
func syncBadger(dir string, vlogFrom uint32) (uint32, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return vlogFrom, err
	}
	next := vlogFrom
	for _, e := range entries {
		name := e.Name()
		switch {
		case strings.HasSuffix(name, ".mem"):
		case strings.HasSuffix(name, ".vlog"):
			fid, err := strconv.ParseUint(strings.TrimSuffix(name, ".vlog"), 10, 32)
			if err != nil || uint32(fid) < vlogFrom {
				continue
			}
			next = max(next, uint32(fid))
		default:
			continue
		}
		if err := fsyncPath(filepath.Join(dir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return vlogFrom, err
		}
	}
	return next, syncDir(dir)
}

// stopCheckpoints ends the checkpoints; later calls do nothing.
func (l *commitLog) stopCheckpoints() {
	l.stopOnce.Do(func() {
		close(l.quit)
		l.wg.Wait()
	})
}

// stop ends the checkpoints and closes the current segment. The committer
// must have stopped.
func (l *commitLog) stop() error {
	l.stopCheckpoints()
	err := l.f.Close()
	if errors.Is(err, os.ErrClosed) {
		err = nil // closed under the committer by a test
	}
	return err
}

// closed is called after stop, once Badger has closed cleanly, which
// flushes every memtable into a synced table and syncs the value log:
// every segment can go. The newest is kept, renamed, for the next Open to
// write over.
func (l *commitLog) closed() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.release(len(l.segs))
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func fdatasync(f *os.File) error {
	for {
		err := unix.Fdatasync(int(f.Fd()))
		if err != unix.EINTR {
			return err
		}
	}
}

// fsyncPath fsyncs the file or directory at path.
func fsyncPath(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	err = f.Sync()
	return errors.Join(err, f.Close())
}

func syncDir(dir string) error { return fsyncPath(dir) }
