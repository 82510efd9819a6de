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
// prefixes can meet only if their hashes lie within the generations they
// used of each other: with g generations, about g times as likely as two
// nodes' first prefixes colliding (a hash of the peer ID and the
// generation would make it g^2 times).
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

// The lease is kept under two store keys. metaEpoch holds the end of the
// epochs leased in generation 0 as 8 bytes, the layout of releases that
// had no generations, and maxEpoch once the node has moved on, so that
// such a release, started on this data dir, takes no fresh actor rather
// than reuse one. metaGeneration holds, from generation 1 on, the
// generation and the end of the epochs leased in it (8 bytes each).
var (
	metaEpoch      = []byte("m/replica/epoch")
	metaGeneration = []byte("m/replica/generation")
)

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

// loadEpoch starts a new lease after the one a previous run held.
func (e *Engine) loadEpoch(ctx context.Context) error {
	gen, err := e.metaValue(ctx, metaGeneration, 16)
	if err != nil {
		return err
	}
	e.epochMu.Lock()
	defer e.epochMu.Unlock()
	if gen != nil {
		e.generation, e.epoch = binary.BigEndian.Uint64(gen), binary.BigEndian.Uint64(gen[8:])
	} else {
		end, err := e.metaValue(ctx, metaEpoch, 8)
		if err != nil {
			return err
		}
		e.generation, e.epoch = 0, 0
		if end != nil {
			e.epoch = binary.BigEndian.Uint64(end)
		}
	}
	if e.epoch >= maxEpoch && e.generation < maxGeneration {
		e.generation, e.epoch = e.generation+1, 0
	}
	e.space.Store(&actorSpace{{prefix: actorPrefix(string(e.self), e.generation), first: e.epoch + 1}})
	return e.leaseLocked(ctx)
}

// metaValue reads the value of a lease key, nil when there is none or it
// does not have size bytes.
func (e *Engine) metaValue(ctx context.Context, key []byte, size int) ([]byte, error) {
	rec, err := e.st.Get(ctx, key)
	switch {
	case errors.Is(err, dht.ErrNotFound):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("replica: reading the epoch lease: %w", err)
	case len(rec.Versions) != 1 || len(rec.Versions[0].Value) != size:
		return nil, nil
	}
	return rec.Versions[0].Value, nil
}

// retireActors makes every actor taken so far, in every generation of this
// run, unusable for new versions: the next write of each key takes a fresh
// one.
func (e *Engine) retireActors() {
	e.epochMu.Lock()
	e.space.Store(&actorSpace{{prefix: e.space.Load().current(), first: e.epoch + 1}})
	e.epochMu.Unlock()
}

// leaseLocked durably reserves the next epochLease epochs of the current
// generation. epochMu held.
func (e *Engine) leaseLocked(ctx context.Context) error {
	end := min(e.epoch+epochLease, maxEpoch)
	meta := func(key []byte, words ...uint64) dht.Entry {
		var b []byte
		for _, w := range words {
			b = binary.BigEndian.AppendUint64(b, w)
		}
		return dht.Entry{Key: key, Record: dht.Record{Versions: []dht.Version{{Value: b, Dot: dht.Dot{Actor: 1, Counter: 1}}}}}
	}
	entries := []dht.Entry{meta(metaEpoch, end)}
	if e.generation > 0 {
		entries = []dht.Entry{meta(metaEpoch, maxEpoch), meta(metaGeneration, e.generation, end)}
	}
	if err := e.st.PutBatch(ctx, entries); err != nil {
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
