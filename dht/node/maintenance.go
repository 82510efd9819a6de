package node

import (
	"context"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ringkv/ringkv/dht/antientropy"
	"github.com/ringkv/ringkv/dht/ring"
)

// MaintenanceConfig tunes anti-entropy, join and leave transfers and
// tombstone collection (see dht/antientropy).
type MaintenanceConfig = antientropy.Config

// DefaultMaintenanceConfig returns LAN defaults.
func DefaultMaintenanceConfig() MaintenanceConfig { return antientropy.DefaultConfig() }

// RepairProgress reports an anti-entropy round as it runs.
type RepairProgress = antientropy.Progress

// maintainer adapts the node to the anti-entropy syncer.
type maintainer struct {
	n *Node
	s *antientropy.Syncer
}

// placement exposes the node's view to the syncer.
type placement struct{ n *Node }

func (p placement) Self() peer.ID { return p.n.self }
func (p placement) Serving() *ring.Ring {
	s, _, _ := p.n.view.rings()
	return s
}
func (p placement) Future() *ring.Ring {
	_, f, _ := p.n.view.rings()
	return f
}
func (p placement) Replicas() int         { return p.n.cfg.Replicas }
func (p placement) Alive(id peer.ID) bool { return p.n.view.Alive(id) }

func newMaintainer(n *Node) (*maintainer, error) {
	cfg := n.cfg.Maintenance
	cfg.Logger = n.log.With("component", "antientropy")
	cfg.Registerer = n.cfg.Registerer
	s, err := antientropy.New(cfg, placement{n}, n.eng, n.tr, n.st, n.clock)
	if err != nil {
		return nil, err
	}
	return &maintainer{n: n, s: s}, nil
}

func (m *maintainer) start(ctx context.Context) error { return m.s.Start(ctx) }
func (m *maintainer) close() error                    { return m.s.Close() }

func (m *maintainer) bootstrap(ctx context.Context) error { return m.s.Bootstrap(ctx, nil) }
func (m *maintainer) drain(ctx context.Context) error     { return m.s.Drain(ctx, nil) }

// Repair runs one anti-entropy round now: every arc this node replicates,
// with every live replica, both ways; then ownership handoff and tombstone
// collection. progress sees each step.
func (n *Node) Repair(ctx context.Context, progress func(RepairProgress)) (RepairProgress, error) {
	return n.maint.s.Round(ctx, progress)
}

// MerkleRoots reports this node's Merkle root for every serving arc it
// replicates; replicas that agree report equal roots.
func (n *Node) MerkleRoots(ctx context.Context) (map[ring.Arc]uint64, error) {
	return n.maint.s.Roots(ctx)
}
