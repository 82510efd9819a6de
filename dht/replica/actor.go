package replica

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cespare/xxhash/v2"

	"github.com/ringkv/ringkv/dht"
)

// Actors. A version's dot names the actor that coordinated it and that
// actor's counter for the key. Dotted version vectors require an actor's
// counter for a key never to go back: a reused dot would be taken for a
// write already seen and dropped. A coordinator can only trust its own
// record for that, and only while the record holds the actor's history,
// which ends when the record is deleted (a collected tombstone, a handoff
// after a ring change, an expiry).
//
// So an actor is per node and per key epoch, as Riak's per-key epochs:
// its high 32 bits are a hash of the node's peer ID, its low 32 bits an
// epoch from a node-wide counter. A node coordinating a key continues the
// actor of its own that the key's record names; when the record names
// none, it takes a fresh epoch. Epochs are leased from the store in
// blocks, so a restart never reuses one.
//
// A node continues only an actor it took in this run. A coordinator sends
// a new version to the other replicas before its own write is durable, so
// a node that crashes may have issued dots its own store never recorded;
// continuing that actor after the restart would issue them again for
// other writes, and the replicas holding the first would drop the second
// as already seen. The same holds after a failed local write, which
// retires every actor taken so far.

// maxEpoch is the last epoch an actor's low 32 bits can name. Past it an
// actor would repeat an earlier one and reissue its dots, so a node that
// reached it takes no fresh actor (errEpochsExhausted): it still
// continues the actors it holds, and writes of keys new to it go to
// another replica.
const maxEpoch = 1<<32 - 1

// epochLease is how many epochs one durable lease covers.
const epochLease = 4096

// metaEpoch is the store key of the end of the current epoch lease.
var metaEpoch = []byte("m/replica/epoch")

// actorPrefixMask selects an actor's node part.
const actorPrefixMask = 0xffffffff00000000

func actorPrefix(self string) uint64 {
	return xxhash.Sum64String(self) & actorPrefixMask
}

// loadEpoch starts a new lease after the one a previous run held.
func (e *Engine) loadEpoch(ctx context.Context) error {
	rec, err := e.st.Get(ctx, metaEpoch)
	switch {
	case err == nil && len(rec.Versions) == 1 && len(rec.Versions[0].Value) == 8:
		e.epoch = binary.BigEndian.Uint64(rec.Versions[0].Value)
	case err == nil, errors.Is(err, dht.ErrNotFound):
		e.epoch = 0
	default:
		return fmt.Errorf("replica: reading the epoch lease: %w", err)
	}
	e.firstEpoch.Store(e.epoch + 1)
	return e.leaseLocked(ctx)
}

// retireActors makes every actor taken so far unusable for new versions:
// the next write of each key takes a fresh one.
func (e *Engine) retireActors() {
	e.epochMu.Lock()
	e.firstEpoch.Store(e.epoch + 1)
	e.epochMu.Unlock()
}

// leaseLocked durably reserves the next epochLease epochs. epochMu held.
func (e *Engine) leaseLocked(ctx context.Context) error {
	end := e.epoch + epochLease
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], end)
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
	first := e.firstEpoch.Load()
	var best dht.Dot
	for _, d := range local.Context {
		if d.Actor&actorPrefixMask == e.prefix && d.Actor&^uint64(actorPrefixMask) >= first && d.Counter > best.Counter {
			best = d
		}
	}
	if best.Counter > 0 {
		return best.Actor, nil
	}
	e.epochMu.Lock()
	defer e.epochMu.Unlock()
	if e.epoch >= maxEpoch {
		return 0, errEpochsExhausted
	}
	e.epoch++
	if e.epoch >= e.leaseEnd {
		if err := e.leaseLocked(ctx); err != nil {
			return 0, err
		}
	}
	return e.prefix | (e.epoch & ^uint64(actorPrefixMask)), nil
}
