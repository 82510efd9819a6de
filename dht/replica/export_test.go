package replica

import (
	"context"
	"slices"

	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"

	"github.com/ringkv/ringkv/dht"
	"github.com/ringkv/ringkv/dht/ring"
)

// Test hooks for package replica_test. The tests live outside the package
// because dht/dhttest (their MemStore) imports dht/node, which imports
// this package.

// HintKey is the store key of the hint for key at pos held for target.
var HintKey = hintKey

// ParseHintKey splits a hint store key.
var ParseHintKey = parseHintKey

// TargetInfo is one write or read target, exported for tests.
type TargetInfo struct {
	ID      peer.ID
	HintFor peer.ID
	Pending bool
}

// WriteTargets returns e's write targets for pos and the acknowledgements
// a write with quorum w requires.
func WriteTargets(e *Engine, pos uint64, w int) ([]TargetInfo, int) {
	ts, required := e.writeTargets(pos, w)
	return targetInfos(ts), required
}

func targetInfos(ts []target) []TargetInfo {
	out := make([]TargetInfo, len(ts))
	for i, t := range ts {
		out[i] = TargetInfo{ID: t.id, HintFor: t.hintFor, Pending: t.pending}
	}
	return out
}

// ReadPlan returns e's read targets for pos and the answers a read with
// quorum r requires.
func ReadPlan(e *Engine, pos uint64, r int) ([]TargetInfo, int) {
	ts, required := e.readPlan(pos, r)
	return targetInfos(ts), required
}

// Handle runs e's protocol handler on req as if from sent it.
func Handle(ctx context.Context, e *Engine, from peer.ID, req proto.Message) (proto.Message, error) {
	return e.handle(ctx, from, req)
}

// Coordinate makes e coordinate w whether or not it is a replica of the key.
func Coordinate(ctx context.Context, e *Engine, w Write) (WriteResult, error) {
	ctx, cancel := e.bound(ctx)
	defer cancel()
	return e.coordinate(ctx, ring.KeyPos(w.Key), w)
}

// ApplyHint merges rec into the hint e holds for owner, as a fallback
// receiving a hinted write would.
func ApplyHint(ctx context.Context, e *Engine, key []byte, rec dht.Record, owner peer.ID) (bool, error) {
	return e.apply(ctx, ring.KeyPos(key), key, rec, owner)
}

// SetEpochForTest makes epoch of generation the last epoch e handed out.
func SetEpochForTest(e *Engine, generation, epoch uint64) {
	e.epochMu.Lock()
	defer e.epochMu.Unlock()
	if generation != e.generation {
		sp := append(slices.Clone(*e.space.Load()), actorRange{prefix: actorPrefix(string(e.self), generation), first: 1})
		e.space.Store(&sp)
	}
	e.generation, e.epoch = generation, epoch
	e.leaseEnd = max(e.leaseEnd, epoch+1)
}

// MaxEpoch and MaxGeneration are the last epoch and generation an actor
// can take.
const (
	MaxEpoch      = maxEpoch
	MaxGeneration = maxGeneration
)

// ActorPrefix is the node part of id's actors in a generation.
func ActorPrefix(id peer.ID, generation uint64) uint64 { return actorPrefix(string(id), generation) }
