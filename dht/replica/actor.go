package replica

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/cespare/xxhash/v2"

	"github.com/ringkv/ringkv/dht"
)

// Actors. A version's dot names the actor that coordinated it and that
// actor's counter for the key. Dotted version vectors require an actor's
// counter for a key never to go back: a reused dot would be taken for a
// write already seen and dropped. A coordinator can only trust its own
// record for that, and only while the record holds the actor's history,
// which ends when the record is deleted (a collected tombstone, a handoff
// after a ring change).
//
// So an actor is per node and per key epoch, as Riak's per-key epochs:
// its low 32 bits are an epoch from a node-wide counter, its high 32 bits
// the node's prefix for the current generation. A node coordinating a
// key continues the actor of its own that the key's record names; when
// the record names none, it takes a fresh epoch. Epochs are leased from
// the store in blocks, so a restart never reuses one.
//
// A node takes an epoch for every key it is the first to write in a run,
// so 2^32 of them can run out (at 1,000 new keys a second, in 50 days).
// Then the node moves to its next generation: the prefix is the high 32
// bits of the hash of its peer ID plus the generation number (mod 2^32),
// so a node's generations never share a prefix, and its epochs start
// again. The lease records the generation with the epochs. Two nodes'
// prefixes can meet only if their hashes lie within a few generations of
// each other, about as likely as two nodes' first prefixes colliding.
//
// A node continues only an actor it took in this run. A coordinator sends
// a new version to the other replicas before its own write is durable, so
// a node that crashes may have issued dots its own store never recorded;
// continuing that actor after the restart would issue them again for
// other writes, and the replicas holding the first would drop the second
// as already seen. The same holds after a failed local write, which
// retires every actor taken so far.

// maxEpoch is the last epoch an actor's low 32 bits can name; the next
// fresh actor starts the next generation.
const maxEpoch = 1<<32 - 1

// maxGeneration is the last generation: past it a prefix would repeat, so
// a node that used it up takes no fresh actor (errEpochsExhausted, after
// 2^64 of them): it still continues the actors it holds, and writes of
// keys new to it go to another replica.
const maxGeneration = 1<<32 - 1

// epochLease is how many epochs one durable lease covers.
const epochLease = 4096

// metaEpoch is the store key of the current lease: the generation and the
// end of the epochs leased in it.
var metaEpoch = []byte("m/replica/epoch")

// actorPrefixMask selects an actor's node part.
const actorPrefixMask = 0xffffffff00000000

// actorPrefix is the node part of self's actors in a generation.
func actorPrefix(self string, generation uint64) uint64 {
	return uint64(uint32(xxhash.Sum64String(self)>>32)+uint32(generation)) << 32
}

// actorSpace is the actors a node may continue: for each prefix it used
// in this run, those from epoch first on (the first of this run or of
// that generation, or the first after a failed local write). The current
// generation's prefix is last.
type actorSpace []actorRange

type actorRange struct {
	prefix uint64
	first  uint64
}

// holds reports whether actor a may be continued.
func (sp actorSpace) holds(a uint64) bool {
	for _, r := range sp {
		if a&actorPrefixMask == r.prefix && a&^uint64(actorPrefixMask) >= r.first {
			return true
		}
	}
	return false
}

// current is the prefix of the current generation.
func (sp actorSpace) current() uint64 { return sp[len(sp)-1].prefix }

// loadEpoch starts a new lease after the one a previous run held. A lease
// written before generations existed (8 bytes) is generation 0.
func (e *Engine) loadEpoch(ctx context.Context) error {
	rec, err := e.st.Get(ctx, metaEpoch)
	var v []byte
	if err == nil && len(rec.Versions) == 1 {
		v = rec.Versions[0].Value
	}
	switch {
	case err == nil && len(v) == 8:
		e.generation, e.epoch = 0, binary.BigEndian.Uint64(v)
	case err == nil && len(v) == 16:
		e.generation, e.epoch = binary.BigEndian.Uint64(v), binary.BigEndian.Uint64(v[8:])
	case err == nil, errors.Is(err, dht.ErrNotFound):
		e.generation, e.epoch = 0, 0
	default:
		return fmt.Errorf("replica: reading the epoch lease: %w", err)
	}
	e.epochMu.Lock()
	defer e.epochMu.Unlock()
	if e.epoch >= maxEpoch && e.generation < maxGeneration {
		e.generation, e.epoch = e.generation+1, 0
	}
	e.space.Store(&actorSpace{{prefix: actorPrefix(string(e.self), e.generation), first: e.epoch + 1}})
	return e.leaseLocked(ctx)
}

// retireActors makes every actor taken so far unusable for new versions:
// the next write of each key takes a fresh one.
func (e *Engine) retireActors() {
	e.epochMu.Lock()
	e.space.Store(&actorSpace{{prefix: e.space.Load().current(), first: e.epoch + 1}})
	e.epochMu.Unlock()
}

// leaseLocked durably reserves the next epochLease epochs of the current
// generation. epochMu held.
func (e *Engine) leaseLocked(ctx context.Context) error {
	end := min(e.epoch+epochLease, maxEpoch)
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], e.generation)
	binary.BigEndian.PutUint64(b[8:], end)
	rec := dht.Record{Versions: []dht.Version{{Value: b[:], Dot: dht.Dot{Actor: 1, Counter: 1}}}}
	if err := e.st.Put(ctx, metaEpoch, rec); err != nil {
		return fmt.Errorf("replica: leasing epochs: %w", err)
	}
	e.leaseEnd = end
	return nil
}

// actorFor returns the actor this node coordinates key's next write as:
// its own actor of this run named in the key's record, or a fresh one.
func (e *Engine) actorFor(ctx context.Context, local dht.Record) (uint64, error) {
	sp := *e.space.Load()
	var best dht.Dot
	for _, d := range local.Context {
		if d.Counter > best.Counter && sp.holds(d.Actor) {
			best = d
		}
	}
	if best.Counter > 0 {
		return best.Actor, nil
	}
	e.epochMu.Lock()
	defer e.epochMu.Unlock()
	if e.epoch >= maxEpoch {
		if e.generation >= maxGeneration {
			return 0, errEpochsExhausted
		}
		e.generation, e.epoch, e.leaseEnd = e.generation+1, 0, 0
		sp := append(slices.Clone(*e.space.Load()), actorRange{prefix: actorPrefix(string(e.self), e.generation), first: 1})
		e.space.Store(&sp)
		e.log.Info("actor epochs of this generation used up: new actors take the next generation's prefix", "generation", e.generation)
	}
	e.epoch++
	if e.epoch >= e.leaseEnd {
		if err := e.leaseLocked(ctx); err != nil {
			return 0, err
		}
	}
	return e.space.Load().current() | (e.epoch & ^uint64(actorPrefixMask)), nil
}
