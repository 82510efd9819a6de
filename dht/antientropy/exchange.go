package antientropy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"

	"github.com/ringkv/ringkv/dht"
	"github.com/ringkv/ringkv/dht/merkle"
	"github.com/ringkv/ringkv/dht/pb"
	"github.com/ringkv/ringkv/dht/replica"
	"github.com/ringkv/ringkv/dht/ring"
)

// An exchange compares a chunk of arcs with one peer and moves the keys
// that differ:
//
//  1. build this node's tree of each arc, depth from its item count;
//  2. Roots: the peer's root and count of each arc at the same depth (an
//     arc where this node holds nothing skips this: all the peer holds
//     there differs);
//  3. walk the trees whose roots differ, all arcs in step (walk.go);
//  4. Keys: list the peer's keys and digests in the differing ranges, page
//     by page, and scan the same ranges locally: a key on one side only, or
//     with different digests, differs;
//  5. Fetch what must be pulled and Apply it locally; Push what must be
//     pushed (this node's record, or after a pull the merged record when
//     it differs from the peer's).
//
// Records are read from the store when they are sent, so a key written
// meanwhile goes out in its newest state.

// Bounds on one exchange (one Roots request). itemsPerExchange keeps the
// peer's scans for one Roots request well within a call timeout: about
// a second at a few microseconds per record.
const (
	arcsPerExchange  = maxArcs
	itemsPerExchange = 1 << 18
)

// runJobs runs every job, one peer after another, and returns the errors
// of the peers that failed.
func (s *Syncer) runJobs(ctx context.Context, jobs []job, tr *tracker) []error {
	var errs []error
	for _, j := range jobs {
		if err := ctx.Err(); err != nil {
			return append(errs, err)
		}
		if err := s.runJob(ctx, j, tr); err != nil {
			s.log.Debug("sync with peer failed", "peer", j.peer, "op", j.mode.String(), "err", err)
			errs = append(errs, fmt.Errorf("peer %s: %w", j.peer, err))
		}
	}
	return errs
}

// runJob exchanges a job's arcs chunk by chunk; it stops at the first
// failure, since the peer is then likely down.
func (s *Syncer) runJob(ctx context.Context, j job, tr *tracker) error {
	for arcs := j.arcs; len(arcs) > 0; {
		ex := &exchange{s: s, peer: j.peer, mode: j.mode, tr: tr}
		n, err := ex.run(ctx, arcs)
		if err != nil {
			return err
		}
		arcs = arcs[n:]
		tr.p.RangesDone += n
		tr.report()
	}
	return nil
}

// exchange is one chunk of arcs compared with one peer.
type exchange struct {
	s    *Syncer
	peer peer.ID
	mode mode
	tr   *tracker

	fetchQ []fetchItem // keys to pull
	pushQ  [][]byte    // keys to push
}

// fetchItem is a key to pull. merge: push the merged record back when it
// differs from the peer's (remote is the peer's digest).
type fetchItem struct {
	key    []byte
	remote uint64
	merge  bool
}

// run exchanges a prefix of arcs, within the exchange bounds, and returns
// how many arcs it covered.
func (ex *exchange) run(ctx context.Context, arcs []ring.Arc) (int, error) {
	s := ex.s
	var (
		trees   []*merkle.Tree
		diffs   []diffRange
		walkers []*walker
		used    int
		items   int
	)
	req := &pb.SyncRootsRequest{}
	for _, a := range arcs {
		if used == arcsPerExchange || items >= itemsPerExchange {
			break
		}
		t, err := buildLocalTree(ctx, s.st, a, s.cfg.Depth)
		if err != nil {
			return 0, err
		}
		used, items = used+1, items+t.Len()
		switch {
		case t.Len() > 0:
			trees = append(trees, t)
			req.Arcs = append(req.Arcs, &pb.SyncArc{Start: a.Start, End: a.End, Depth: uint32(t.Depth())})
		case ex.mode.pulls():
			diffs = append(diffs, diffRange{start: a.Start, end: a.End})
		}
	}
	if len(trees) > 0 {
		resp, err := s.callRoots(ctx, ex.peer, req, ex.tr)
		if err != nil {
			return 0, err
		}
		for i, t := range trees {
			local, remote, arc := t.Root(), resp.Roots[i], req.Arcs[i]
			if local == remote {
				s.m.ranges.WithLabelValues("equal").Inc()
				continue
			}
			s.m.ranges.WithLabelValues("differ").Inc()
			switch {
			case ex.mode == modePull && remote == 0:
			case remote == 0 || t.Depth() == 0:
				diffs = append(diffs, diffRange{start: arc.Start, end: arc.End, remoteEmpty: remote == 0})
			default:
				walkers = append(walkers, newWalker(t, arc))
			}
		}
	}
	walked, err := ex.walk(ctx, walkers)
	if err != nil {
		return 0, err
	}
	if err := ex.compare(ctx, append(diffs, walked...)); err != nil {
		return 0, err
	}
	return used, ex.flush(ctx, true)
}

// compare lists and classifies the keys of every differing range.
func (ex *exchange) compare(ctx context.Context, diffs []diffRange) error {
	var listed []span
	for _, d := range diffs {
		if !d.remoteEmpty {
			listed = append(listed, arcSpans(d.start, d.end)...)
			continue
		}
		for _, sp := range arcSpans(d.start, d.end) {
			lo, hi := sp.keys()
			if err := ex.scanLocal(ctx, lo, hi, nil); err != nil {
				return err
			}
		}
	}
	for len(listed) > 0 {
		n := min(len(listed), maxSpans)
		if err := ex.compareSpans(ctx, listed[:n]); err != nil {
			return err
		}
		listed = listed[n:]
	}
	return nil
}

// compareSpans pages through the peer's keys in spans and, for each page,
// scans the same stretch of the local store.
func (ex *exchange) compareSpans(ctx context.Context, spans []span) error {
	req := &pb.SyncKeysRequest{Spans: make([]*pb.SyncSpan, len(spans)), Limit: uint32(ex.s.cfg.BatchKeys)}
	for i, sp := range spans {
		req.Spans[i] = &pb.SyncSpan{From: sp.from, To: sp.to}
	}
	for {
		resp, err := ex.s.callKeys(ctx, ex.peer, req, ex.tr)
		if err != nil {
			return err
		}
		remote, last, lastSpan, err := ex.pageMap(spans, req, resp)
		if err != nil {
			return err
		}
		end, endKey := len(spans)-1, []byte(nil)
		if resp.More {
			end, endKey = lastSpan, dataKey(last)
		}
		for k := int(req.FromSpan); k <= end; k++ {
			lo, hi := spans[k].keys()
			if k == int(req.FromSpan) && len(req.AfterKey) > 0 {
				lo = after(dataKey(req.AfterKey))
			}
			if k == end && endKey != nil {
				hi = after(endKey)
			}
			if err := ex.scanLocal(ctx, lo, hi, remote); err != nil {
				return err
			}
		}
		rest := make([]string, 0, len(remote))
		for k := range remote {
			rest = append(rest, k)
		}
		slices.Sort(rest)
		for _, k := range rest {
			ex.remoteOnly([]byte(k), remote[k])
		}
		if !resp.More {
			return nil
		}
		req.FromSpan, req.AfterKey = uint32(lastSpan), last
	}
}

// pageMap checks that a page of keys lies in the spans, after the
// request's cursor and in order, and returns it as key -> digest with its
// last key and that key's span.
func (ex *exchange) pageMap(spans []span, req *pb.SyncKeysRequest, resp *pb.SyncKeysResponse) (map[string]uint64, []byte, int, error) {
	remote := make(map[string]uint64, len(resp.Entries))
	j := int(req.FromSpan)
	var prev []byte
	if len(req.AfterKey) > 0 {
		prev = dataKey(req.AfterKey)
	}
	var last []byte
	for _, e := range resp.Entries {
		pos := ring.KeyPos(e.Key)
		for j < len(spans) && !spans[j].contains(pos) {
			j, prev = j+1, nil
		}
		sk := dataKey(e.Key)
		if j == len(spans) || (prev != nil && bytes.Compare(sk, prev) <= 0) {
			return nil, nil, 0, fmt.Errorf("%w: %s: listed keys out of order or outside the spans", ErrBadResponse, ex.peer)
		}
		prev, last = sk, e.Key
		remote[string(e.Key)] = e.Digest
	}
	return remote, last, j, nil
}

// scanLocal classifies this node's keys in [lo, hi) against remote (nil:
// the peer holds nothing there), a page at a time so that no store
// iterator stays open across calls to the peer.
func (ex *exchange) scanLocal(ctx context.Context, lo, hi []byte, remote map[string]uint64) error {
	type local struct {
		key    []byte
		digest uint64
	}
	page := make([]local, 0, min(ex.s.cfg.BatchKeys, 256))
	for lo != nil {
		page = page[:0]
		resume, err := scanRange(ctx, ex.s.st, lo, hi, func(sk []byte, rec dht.Record) bool {
			if _, key, ok := replica.ParseDataKey(sk); ok {
				page = append(page, local{key: bytes.Clone(key), digest: merkle.RecordDigest(rec)})
			}
			return len(page) >= ex.s.cfg.BatchKeys
		})
		if err != nil {
			return err
		}
		for _, l := range page {
			rd, ok := remote[string(l.key)]
			switch {
			case !ok:
				ex.localOnly(l.key)
			case rd != l.digest:
				delete(remote, string(l.key))
				ex.differ(l.key, rd)
			default:
				delete(remote, string(l.key))
			}
		}
		if err := ex.flush(ctx, false); err != nil {
			return err
		}
		lo = resume
	}
	return nil
}

func (ex *exchange) localOnly(key []byte) {
	if ex.mode.pushes() {
		ex.pushQ = append(ex.pushQ, key)
	}
}

func (ex *exchange) remoteOnly(key []byte, digest uint64) {
	if ex.mode.pulls() {
		ex.fetchQ = append(ex.fetchQ, fetchItem{key: key, remote: digest})
	}
}

func (ex *exchange) differ(key []byte, digest uint64) {
	switch ex.mode {
	case modeBoth:
		ex.fetchQ = append(ex.fetchQ, fetchItem{key: key, remote: digest, merge: true})
	case modePull:
		ex.fetchQ = append(ex.fetchQ, fetchItem{key: key, remote: digest})
	case modePush:
		ex.pushQ = append(ex.pushQ, key)
	}
}

// flush sends the queued fetches and pushes once a batch is full, or all
// of them when all is set, and reports the progress.
func (ex *exchange) flush(ctx context.Context, all bool) error {
	moved := false
	if len(ex.fetchQ) > 0 && (all || len(ex.fetchQ) >= ex.s.cfg.BatchKeys) {
		if err := ex.pull(ctx); err != nil {
			return err
		}
		moved = true
	}
	if len(ex.pushQ) > 0 && (all || len(ex.pushQ) >= ex.s.cfg.BatchKeys) {
		if err := ex.s.push(ctx, ex.peer, ex.pushQ, ex.tr); err != nil {
			return err
		}
		ex.pushQ = ex.pushQ[:0]
		moved = true
	}
	if moved {
		ex.tr.report()
	}
	return nil
}

// pull fetches the queued keys from the peer and applies them locally.
func (ex *exchange) pull(ctx context.Context) error {
	s := ex.s
	pending := ex.fetchQ
	keys := make([][]byte, 0, min(len(pending), s.cfg.BatchKeys))
	for len(pending) > 0 {
		keys = keys[:0]
		for _, it := range pending[:min(len(pending), s.cfg.BatchKeys)] {
			keys = append(keys, it.key)
		}
		recs, err := s.callFetch(ctx, ex.peer, keys, ex.tr)
		if err != nil {
			return err
		}
		for i, r := range recs {
			if err := ex.applyFetched(ctx, pending[i], r); err != nil {
				return err
			}
		}
		pending = pending[len(recs):]
	}
	ex.fetchQ = ex.fetchQ[:0]
	return nil
}

// applyFetched merges one pulled record into the local replica and, for a
// two-way repair, queues the merged record for the peer if it lacks it.
func (ex *exchange) applyFetched(ctx context.Context, it fetchItem, r *pb.SyncFetched) error {
	if !r.Found {
		return nil
	}
	s := ex.s
	if _, err := s.rep.Apply(ctx, it.key, ring.KeyPos(it.key), dht.RecordFromPB(r.Record)); err != nil {
		return fmt.Errorf("apply: %w", err)
	}
	ex.tr.p.KeysReceived++
	s.m.keysPulled.Inc()
	if !it.merge {
		return nil
	}
	merged, found, err := getLocal(ctx, s.st, it.key)
	if err != nil {
		return err
	}
	if found && merkle.RecordDigest(merged) != it.remote {
		ex.pushQ = append(ex.pushQ, it.key)
	}
	return nil
}

// push sends this node's current records of keys to peer `to`. Keys
// this node no longer holds are skipped.
func (s *Syncer) push(ctx context.Context, to peer.ID, keys [][]byte, tr *tracker) error {
	entries := make([]*pb.SyncEntry, 0, len(keys))
	for _, key := range keys {
		rec, found, err := getLocal(ctx, s.st, key)
		if err != nil {
			return err
		}
		if found {
			entries = append(entries, &pb.SyncEntry{Key: key, Record: dht.RecordToPB(rec)})
		}
	}
	_, err := s.sendEntries(ctx, to, entries, tr)
	return err
}

// sendEntries pushes entries to peer `to` in batches bounded by BatchKeys
// and BatchBytes. A record too large for one message is logged, skipped
// and reported in skipped (indexes into entries); any other failure stops
// the push.
func (s *Syncer) sendEntries(ctx context.Context, to peer.ID, entries []*pb.SyncEntry, tr *tracker) (skipped map[int]bool, err error) {
	for off := 0; off < len(entries); {
		rest := entries[off:]
		n, size := 0, 0
		for n < len(rest) && n < s.cfg.BatchKeys {
			k := proto.Size(rest[n])
			if n > 0 && size+k > s.cfg.BatchBytes {
				break
			}
			n, size = n+1, size+k
		}
		err := s.callPush(ctx, to, rest[:n], tr)
		switch {
		case errors.Is(err, dht.ErrMessageTooLarge) && n == 1:
			s.log.Warn("record too large to sync", "peer", to, "key", string(rest[0].Key), "err", err)
			s.m.refused.WithLabelValues("too_large").Inc()
			if skipped == nil {
				skipped = map[int]bool{}
			}
			skipped[off] = true
		case err != nil:
			return skipped, err
		default:
			tr.p.KeysSent += int64(n)
			s.m.keysPushed.Add(float64(n))
		}
		off += n
	}
	return skipped, nil
}
