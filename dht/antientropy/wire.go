package antientropy

import (
	"context"
	"fmt"

	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"

	"github.com/ringkv/ringkv/dht/pb"
)

// Requester side of the protocol: one call per request, bounded by
// CallTimeout, charged to the rate limiter and the progress byte count.

// call sends req to peer `to` and returns its answer.
func (s *Syncer) call(ctx context.Context, to peer.ID, req *pb.SyncRequest, tr *tracker) (*pb.SyncResponse, error) {
	n := proto.Size(req)
	if err := s.throttle(ctx, n); err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, s.cfg.CallTimeout)
	defer cancel()
	resp := new(pb.SyncResponse)
	if err := s.tr.Call(cctx, to, Protocol, req, resp); err != nil {
		return nil, err
	}
	m := proto.Size(resp)
	s.m.bytes.WithLabelValues("sent").Add(float64(n))
	s.m.bytes.WithLabelValues("received").Add(float64(m))
	if tr != nil {
		tr.p.Bytes += int64(n + m)
	}
	return resp, s.throttle(ctx, m)
}

// throttle waits until the rate limiter allows n more bytes. Amounts above
// the burst are taken in burst-sized pieces.
func (s *Syncer) throttle(ctx context.Context, n int) error {
	burst := s.rate.Burst()
	for n > 0 {
		k := min(n, burst)
		if err := s.rate.WaitN(ctx, k); err != nil {
			return fmt.Errorf("antientropy: rate limit: %w", err)
		}
		n -= k
	}
	return nil
}

func (s *Syncer) callRoots(ctx context.Context, to peer.ID, req *pb.SyncRootsRequest, tr *tracker) (*pb.SyncRootsResponse, error) {
	resp, err := s.call(ctx, to, &pb.SyncRequest{Op: &pb.SyncRequest_Roots{Roots: req}}, tr)
	if err != nil {
		return nil, err
	}
	r := resp.GetRoots()
	if r == nil || len(r.Roots) != len(req.Arcs) || len(r.Counts) != len(req.Arcs) {
		return nil, fmt.Errorf("%w: %s: roots answer does not match %d arcs", ErrBadResponse, to, len(req.Arcs))
	}
	return r, nil
}

func (s *Syncer) callLevel(ctx context.Context, to peer.ID, req *pb.SyncLevelRequest, tr *tracker) (*pb.SyncLevelResponse, error) {
	resp, err := s.call(ctx, to, &pb.SyncRequest{Op: &pb.SyncRequest_Level{Level: req}}, tr)
	if err != nil {
		return nil, err
	}
	r := resp.GetLevel()
	if r == nil || len(r.Results) != len(req.Queries) {
		return nil, fmt.Errorf("%w: %s: level answer does not match %d queries", ErrBadResponse, to, len(req.Queries))
	}
	for i, q := range req.Queries {
		if len(r.Results[i].GetHashes()) != len(q.Indexes) {
			return nil, fmt.Errorf("%w: %s: %d hashes for %d nodes", ErrBadResponse, to, len(r.Results[i].GetHashes()), len(q.Indexes))
		}
	}
	return r, nil
}

func (s *Syncer) callKeys(ctx context.Context, to peer.ID, req *pb.SyncKeysRequest, tr *tracker) (*pb.SyncKeysResponse, error) {
	resp, err := s.call(ctx, to, &pb.SyncRequest{Op: &pb.SyncRequest_Keys{Keys: req}}, tr)
	if err != nil {
		return nil, err
	}
	r := resp.GetKeys()
	switch {
	case r == nil:
		return nil, fmt.Errorf("%w: %s: keys request answered without keys", ErrBadResponse, to)
	case r.More && len(r.Entries) == 0:
		return nil, fmt.Errorf("%w: %s: empty keys page with more to come", ErrBadResponse, to)
	case len(r.Entries) > maxBatchKeys:
		return nil, fmt.Errorf("%w: %s: %d keys in one page", ErrBadResponse, to, len(r.Entries))
	}
	for _, e := range r.Entries {
		if err := s.checkKey(e.Key); err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrBadResponse, to, err)
		}
	}
	return r, nil
}

// callFetch returns the peer's records for a non-empty prefix of keys.
func (s *Syncer) callFetch(ctx context.Context, to peer.ID, keys [][]byte, tr *tracker) ([]*pb.SyncFetched, error) {
	req := &pb.SyncFetchRequest{Keys: keys}
	resp, err := s.call(ctx, to, &pb.SyncRequest{Op: &pb.SyncRequest_Fetch{Fetch: req}}, tr)
	if err != nil {
		return nil, err
	}
	recs := resp.GetFetch().GetRecords()
	if len(recs) == 0 || len(recs) > len(keys) {
		return nil, fmt.Errorf("%w: %s: %d records for %d keys", ErrBadResponse, to, len(recs), len(keys))
	}
	for i, r := range recs {
		if string(r.Key) != string(keys[i]) {
			return nil, fmt.Errorf("%w: %s: fetched record %d is not of the key asked for", ErrBadResponse, to, i)
		}
		if r.Found {
			if err := checkRecord(r.Record); err != nil {
				return nil, fmt.Errorf("%w: %s: %v", ErrBadResponse, to, err)
			}
		}
	}
	return recs, nil
}

func (s *Syncer) callPush(ctx context.Context, to peer.ID, entries []*pb.SyncEntry, tr *tracker) error {
	req := &pb.SyncPushRequest{Entries: entries}
	resp, err := s.call(ctx, to, &pb.SyncRequest{Op: &pb.SyncRequest_Push{Push: req}}, tr)
	if err != nil {
		return err
	}
	if resp.GetPush() == nil {
		return fmt.Errorf("%w: %s: push answered without a result", ErrBadResponse, to)
	}
	return nil
}

// checkKey validates a key received from a peer.
func (s *Syncer) checkKey(key []byte) error {
	if len(key) == 0 || len(key) > s.cfg.MaxKeySize {
		return fmt.Errorf("key of %d bytes", len(key))
	}
	return nil
}

// checkRecord validates a record received from a peer.
func checkRecord(r *pb.Record) error {
	switch {
	case r == nil:
		return fmt.Errorf("missing record")
	case len(r.Versions) > maxRecordVersions || len(r.Context) > maxRecordContext:
		return fmt.Errorf("record with %d versions and %d context entries", len(r.Versions), len(r.Context))
	}
	return nil
}
