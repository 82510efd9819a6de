package antientropy

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ringkv/ringkv/dht"
	"github.com/ringkv/ringkv/dht/merkle"
	"github.com/ringkv/ringkv/dht/pb"
	"github.com/ringkv/ringkv/dht/replica"
	"github.com/ringkv/ringkv/dht/ring"
)

// Ownership handoff. After a join, a leave or a failure the ring changes
// and a node may hold records of arcs it no longer replicates: neither a
// natural replica (serving ring) nor a future one. Each round pushes those
// records to the arc's natural replicas and deletes the local copy once
// every one of them acknowledged, and only if the local record is still
// the one pushed (Replica.Release compares the digest and deletes under
// the key's lock, so a write that lands after the push, such as a replica
// write from a node whose view of the ring lags, keeps the record for the
// next round). An arc with a natural replica down waits for the next
// round, so a record is never deleted before all N replicas hold it.

// handoff runs one handoff pass over the serving ring.
func (s *Syncer) handoff(ctx context.Context, tr *tracker) error {
	serving, future, self, n := s.place.Serving(), s.place.Future(), s.place.Self(), s.place.Replicas()
	var errs []error
	for _, arc := range serving.Arcs() {
		if err := ctx.Err(); err != nil {
			return err
		}
		targets := serving.PreferenceList(arc.End, n)
		if contains(targets, self) || !s.allAlive(targets) {
			continue
		}
		if err := s.handoffArc(ctx, arc, targets, future, tr); err != nil {
			s.log.Debug("handoff failed", "arc", fmt.Sprint(arc), "err", err)
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// handoffArc hands off this node's records in arc, a page at a time.
// Records of keys this node will replicate in the future ring stay.
func (s *Syncer) handoffArc(ctx context.Context, arc ring.Arc, targets []peer.ID, future *ring.Ring, tr *tracker) error {
	self, n := s.place.Self(), s.place.Replicas()
	for _, sp := range arcSpans(arc.Start, arc.End) {
		lo, hi := sp.keys()
		for lo != nil {
			var keys [][]byte
			resume, err := scanRange(ctx, s.st, lo, hi, func(sk []byte, _ dht.Record) bool {
				pos, key, ok := replica.ParseDataKey(sk)
				if ok && !contains(future.PreferenceList(pos, n), self) {
					keys = append(keys, bytes.Clone(key))
				}
				return len(keys) >= s.cfg.BatchKeys
			})
			if err != nil {
				return err
			}
			if err := s.handOffKeys(ctx, keys, targets, tr); err != nil {
				return err
			}
			lo = resume
		}
	}
	return nil
}

// handOffKeys pushes the records of keys to every target and, once all
// of them took them, deletes the ones that did not change meanwhile.
func (s *Syncer) handOffKeys(ctx context.Context, keys [][]byte, targets []peer.ID, tr *tracker) error {
	entries := make([]*pb.SyncEntry, 0, len(keys))
	digests := make([]uint64, 0, len(keys))
	for _, key := range keys {
		rec, found, err := getLocal(ctx, s.st, key)
		if err != nil {
			return err
		}
		if found {
			entries = append(entries, &pb.SyncEntry{Key: key, Record: dht.RecordToPB(rec)})
			digests = append(digests, merkle.RecordDigest(rec))
		}
	}
	if len(entries) == 0 {
		return nil
	}
	kept := map[int]bool{}
	for _, to := range targets {
		skipped, err := s.sendEntries(ctx, to, entries, tr)
		if err != nil {
			return fmt.Errorf("peer %s: %w", to, err)
		}
		for i := range skipped {
			kept[i] = true
		}
	}
	for i, e := range entries {
		if kept[i] {
			continue // not delivered: too large for one message
		}
		released, err := s.rep.Release(ctx, e.Key, digests[i])
		if err != nil {
			return err
		}
		if released { // else it changed since it was pushed: next round
			s.m.handedOff.Inc()
		}
	}
	return nil
}

// allAlive reports whether every node of ids other than this one is alive.
func (s *Syncer) allAlive(ids []peer.ID) bool {
	self := s.place.Self()
	for _, id := range ids {
		if id != self && !s.place.Alive(id) {
			return false
		}
	}
	return true
}
