package antientropy

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ringkv/ringkv/dht"
	"github.com/ringkv/ringkv/dht/merkle"
	"github.com/ringkv/ringkv/dht/replica"
	"github.com/ringkv/ringkv/dht/ring"
	"github.com/ringkv/ringkv/dht/version"
)

// Tombstone collection. A deleted key is a record none of whose versions
// is live: each is a tombstone or a value whose TTL has run out (in
// last-writer-wins mode, the version readers are shown is). Expired
// values are collected exactly as tombstones are, context and all, so an
// expired write's context keeps covering what it overwrote on every
// replica until all of them drop it together. A deleted key is purged
// when:
//
//   - every version died (was deleted, or expired) at least
//     TombstoneGrace ago;
//   - this node is the first live natural replica of the key (one
//     collector per key, no races between replicas);
//   - every natural replica, and every future replica while a join or
//     leave is in progress, is alive and returns (ReadReplica) a record
//     with the same digest as this node's.
//
// Then the others are asked to purge (CallPurge), each deleting its
// record only if it still has that digest, and this node purges last, and
// only if all the others did, so the collector keeps the tombstone while
// anyone might still need it. If any replica is down, unreachable or
// differs, the key waits for the next round.
//
// Why a deleted key stays deleted after a partition heals: a stale live
// copy can come back only from a node that still holds it. Every replica
// is checked to hold exactly the deleted record (whose causal context
// covers the deleted versions) before anyone purges, so at that moment no
// replica holds a live version; a replica cut off by a partition does not
// answer and blocks the purge until the partition heals and anti-entropy
// has given it the tombstone. A partial purge (some CallPurge failed)
// leaves tombstones, never live versions, which anti-entropy spreads
// again until the next collection. Hints are the one copy outside the
// replica set that the collector does not check; they are dropped
// undelivered once older than the replica engine's HintMaxAge, which is
// below the grace (see dht/replica/hints.go).
//
// The residual risk is a record on a node that was a replica before a
// ring change, was down or partitioned through the whole grace period and
// then hands its old record off. Such a copy carries no tombstone and,
// arriving after the purge, is taken as a new key. TombstoneGrace should
// exceed the longest outage after which a node is still allowed back with
// its data.

// collectTombstones runs one collection pass over the arcs this node
// collects for.
func (s *Syncer) collectTombstones(ctx context.Context) error {
	serving, self, n := s.place.Serving(), s.place.Self(), s.place.Replicas()
	cutoff := s.clock.Now().Add(-s.cfg.TombstoneGrace).UnixNano()
	var errs []error
	for _, arc := range serving.Arcs() {
		if err := ctx.Err(); err != nil {
			return err
		}
		list := serving.PreferenceList(arc.End, n)
		if s.firstLive(list) != self || !s.allAlive(list) {
			continue
		}
		if err := s.collectArc(ctx, arc, list, cutoff); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// firstLive returns the first node of list that is this node or alive.
func (s *Syncer) firstLive(list []peer.ID) peer.ID {
	for _, id := range list {
		if id == s.place.Self() || s.place.Alive(id) {
			return id
		}
	}
	return ""
}

// tombstone is a collection candidate.
type tombstone struct {
	key    []byte
	digest uint64
}

// collectArc finds the keys of an arc deleted before cutoff, a page at a
// time, and collects each.
func (s *Syncer) collectArc(ctx context.Context, arc ring.Arc, list []peer.ID, cutoff int64) error {
	for _, sp := range arcSpans(arc.Start, arc.End) {
		lo, hi := sp.keys()
		for lo != nil {
			var cands []tombstone
			resume, err := scanRange(ctx, s.st, lo, hi, func(sk []byte, rec dht.Record) bool {
				if _, key, ok := replica.ParseDataKey(sk); ok && version.DiedBy(rec, cutoff, s.cfg.LWW) {
					cands = append(cands, tombstone{key: bytes.Clone(key), digest: merkle.RecordDigest(rec)})
				}
				return len(cands) >= s.cfg.BatchKeys
			})
			if err != nil {
				return err
			}
			for _, c := range cands {
				if err := s.collect(ctx, c, list); err != nil {
					return err
				}
			}
			lo = resume
		}
	}
	return nil
}

// collect purges one tombstone if every replica holds it. It returns an
// error only for local store failures; a replica that is down or differs
// just skips the key.
func (s *Syncer) collect(ctx context.Context, c tombstone, list []peer.ID) error {
	self := s.place.Self()
	others := make([]peer.ID, 0, len(list))
	for _, id := range list {
		if id != self {
			others = append(others, id)
		}
	}
	for _, id := range s.place.Future().PreferenceList(ring.KeyPos(c.key), s.place.Replicas()) {
		if id != self && !contains(others, id) {
			others = append(others, id)
		}
	}
	for _, id := range others {
		if !s.place.Alive(id) || !s.replicaHolds(ctx, id, c) {
			s.m.tombstones.WithLabelValues("kept").Inc()
			return nil
		}
	}
	for _, id := range others {
		cctx, cancel := context.WithTimeout(ctx, s.cfg.CallTimeout)
		ok, err := s.rep.CallPurge(cctx, id, c.key, c.digest)
		cancel()
		if err != nil || !ok {
			s.log.Debug("tombstone purge refused", "peer", id, "key", string(c.key), "err", err)
			s.m.tombstones.WithLabelValues("kept").Inc()
			return nil
		}
	}
	ok, err := s.rep.Purge(ctx, c.key, c.digest)
	if err != nil {
		return fmt.Errorf("purge: %w", err)
	}
	if ok {
		s.m.tombstones.WithLabelValues("purged").Inc()
	}
	return nil
}

// replicaHolds reports whether peer id's record of the key has the
// candidate's digest.
func (s *Syncer) replicaHolds(ctx context.Context, id peer.ID, c tombstone) bool {
	cctx, cancel := context.WithTimeout(ctx, s.cfg.CallTimeout)
	defer cancel()
	rec, found, err := s.rep.ReadReplica(cctx, id, c.key)
	if err != nil {
		s.log.Debug("tombstone check failed", "peer", id, "key", string(c.key), "err", err)
		return false
	}
	return found && merkle.RecordDigest(rec) == c.digest
}
