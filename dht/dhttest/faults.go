package dhttest

// Fault injection: what a Cluster does to the network (partitions), to
// messages (lost answers) and to time (an advancing clock, skews).

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"

	"github.com/ringkv/ringkv/dht"
)

// The network: which up slots can reach each other. Two up slots are
// linked on the mocknet exactly when they are in the same partition group
// (all of them when healed); relinkLocked makes the mocknet match.

// Partition splits the cluster into groups: slots in the same group reach
// each other, slots in different groups do not. Slots listed in no group
// form one more group together, so Partition([]int{3}) cuts slot 3 off
// from the rest. Cut pairs are unlinked and then disconnected, which
// resets every stream between them; in-flight calls fail at once. A slot
// restarted during a partition joins its own group. Partition replaces any
// earlier partition.
func (c *Cluster) Partition(groups ...[]int) {
	c.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	p := &partition{groups: map[peer.ID]int{}, rest: len(groups)}
	for gi, members := range groups {
		for _, i := range members {
			id := c.slotLocked(i).id
			if prev, ok := p.groups[id]; ok {
				c.t.Fatalf("dhttest: Partition: slot %d is in groups %d and %d", i, prev, gi)
			}
			p.groups[id] = gi
		}
	}
	c.part.Store(p)
	if err := c.relinkLocked(); err != nil {
		c.t.Fatalf("dhttest: Partition: %v", err)
	}
}

// Heal ends the partition: every pair of up slots is linked again and
// connects on its next call.
func (c *Cluster) Heal() {
	c.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.part.Store(nil)
	if err := c.relinkLocked(); err != nil {
		c.t.Fatalf("dhttest: Heal: %v", err)
	}
}

// partition is an immutable description of who reaches whom, by peer ID,
// so that the connection guard can read it without the cluster's lock.
type partition struct {
	groups map[peer.ID]int // listed slots
	rest   int             // the group of every other slot
}

// reachable reports whether a and b are in the same group; a nil
// partition (healed) reaches everyone.
func (p *partition) reachable(a, b peer.ID) bool {
	if p == nil {
		return true
	}
	group := func(id peer.ID) int {
		if g, ok := p.groups[id]; ok {
			return g
		}
		return p.rest
	}
	return group(a) == group(b)
}

// guard closes every connection that opens between slots the partition
// separates. Unlinking stops new dials, but a dial that found its link
// just before the cut completes after it: mocknet adds the connection,
// then notifies (synchronously, which is why the close runs apart), and
// the guard sees the new partition. It is every host's Connected
// notifiee.
func (c *Cluster) guard(_ network.Network, conn network.Conn) {
	if !c.part.Load().reachable(conn.LocalPeer(), conn.RemotePeer()) {
		go conn.Close()
	}
}

// Reachable reports whether slots i and j are both up and in the same
// partition group.
func (c *Cluster) Reachable(i, j int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.slotLocked(i).up && c.slotLocked(j).up && c.reachableLocked(i, j)
}

// Group returns the up slots that slot i can reach, itself included,
// ascending.
func (c *Cluster) Group(i int) []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []int
	for _, s := range c.slots {
		if s.up && c.reachableLocked(i, s.i) {
			out = append(out, s.i)
		}
	}
	return out
}

// reachableLocked reports whether i and j are in the same partition group
// (ignoring whether they are up).
func (c *Cluster) reachableLocked(i, j int) bool {
	return c.part.Load().reachable(c.slots[i].id, c.slots[j].id)
}

// relinkLocked makes the mocknet's links match the up slots and the
// partition: it links every pair that should reach each other and is not
// linked, and unlinks and then disconnects every linked pair that should
// not.
func (c *Cluster) relinkLocked() error {
	var errs []error
	for a, sa := range c.slots {
		for _, sb := range c.slots[a+1:] {
			want := sa.up && sb.up && c.reachableLocked(sa.i, sb.i)
			linked := len(c.mn.LinksBetweenPeers(sa.id, sb.id)) > 0
			switch {
			case want && !linked:
				if _, err := c.mn.LinkPeers(sa.id, sb.id); err != nil {
					errs = append(errs, fmt.Errorf("link %d-%d: %w", sa.i, sb.i, err))
				}
			case !want && linked:
				errs = append(errs, c.cutLocked(sa, sb))
			}
		}
	}
	return errors.Join(errs...)
}

// cutLocked unlinks a and b, then closes their connections from both
// sides. A side that is no longer a mocknet host (closed and replaced) is
// skipped.
func (c *Cluster) cutLocked(a, b *slot) error {
	if err := c.mn.UnlinkPeers(a.id, b.id); err != nil {
		return fmt.Errorf("unlink %d-%d: %w", a.i, b.i, err)
	}
	var errs []error
	peers := c.mn.Peers()
	for _, p := range [][2]*slot{{a, b}, {b, a}} {
		from, to := p[0], p[1]
		if !slices.Contains(peers, from.id) {
			continue
		}
		if err := c.mn.DisconnectPeers(from.id, to.id); err != nil {
			errs = append(errs, fmt.Errorf("disconnect %d-%d: %w", from.i, to.i, err))
		}
	}
	return errors.Join(errs...)
}

// Message-level faults that links cannot express: a request that the peer
// executes but whose answer never reaches the caller, as when a
// connection drops between the two. Each slot's node talks through a
// faultTransport wrapping its dht/p2p transport.

var _ dht.Transport = (*faultTransport)(nil)

// faults are one slot's pending message faults; they outlive restarts.
type faults struct {
	mu   sync.Mutex
	lose map[dht.Protocol]int // responses still to lose, by protocol; guarded by mu
}

// take consumes one pending loss on p and reports whether there was one.
func (f *faults) take(p dht.Protocol) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.lose[p] <= 0 {
		return false
	}
	f.lose[p]--
	return true
}

// faultTransport applies the partition and a slot's faults to the calls
// its node makes.
type faultTransport struct {
	dht.Transport
	f    *faults
	part *atomic.Pointer[partition]
}

// Call refuses a call to a peer the partition separates from this one;
// otherwise it runs the call and, when a loss is pending for p and the
// call went to another peer and succeeded, throws the answer away and
// reports the peer unreachable.
//
// The links alone do not make a partition tight: mocknet opens a stream
// on a connection that is being closed (conn.NewStream does not check),
// and such a stream outlives the connection, so a pooled stream opened at
// the moment of the cut kept two sides talking for seconds.
func (t *faultTransport) Call(ctx context.Context, to peer.ID, p dht.Protocol, req, resp proto.Message) error {
	if !t.part.Load().reachable(t.Self(), to) {
		return dht.NotSent("peer %s on %s: dhttest: partitioned", to, p)
	}
	err := t.Transport.Call(ctx, to, p, req, resp)
	if err == nil && to != t.Self() && t.f.take(p) {
		proto.Reset(resp)
		return fmt.Errorf("%w: peer %s on %s: dhttest: response lost", dht.ErrUnreachable, to, p)
	}
	return err
}

// LoseResponses makes the next n calls that slot i's node makes to other
// nodes on protocol p run at the peer as usual, but lose the answer: the
// caller gets an error wrapping dht.ErrUnreachable, as if the connection
// dropped after the request was served. It adds to any losses pending.
func (c *Cluster) LoseResponses(i int, p dht.Protocol, n int) {
	c.mu.Lock()
	f := c.slotLocked(i).faults
	c.mu.Unlock()
	f.mu.Lock()
	f.lose[p] += n
	f.mu.Unlock()
}

// PendingLosses returns how many of the responses LoseResponses asked for
// on slot i and protocol p have not been lost yet.
func (c *Cluster) PendingLosses(i int, p dht.Protocol) int {
	c.mu.Lock()
	f := c.slotLocked(i).faults
	c.mu.Unlock()
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lose[p]
}

// Time: one clock for the whole cluster, plus a skew per slot.

var (
	_ dht.Clock = (*Clock)(nil)
	_ dht.Clock = (*skewedClock)(nil)
)

// Clock is the wall clock plus an offset that only moves forward. Every
// node and store of a Cluster reads it, so Advance makes time jump for the
// whole cluster at once (TTL expiry, tombstone grace) while real timers
// keep the protocols running. It is safe for concurrent use.
type Clock struct {
	offset atomic.Int64 // nanoseconds added to time.Now()
}

// NewClock returns a clock that reads the wall clock until advanced.
func NewClock() *Clock { return &Clock{} }

// Now returns the wall clock plus the offset.
func (c *Clock) Now() time.Time { return time.Now().Add(time.Duration(c.offset.Load())) }

// Advance moves the clock forward by d; a negative d is ignored, since
// components may assume time does not run backwards.
func (c *Clock) Advance(d time.Duration) {
	if d > 0 {
		c.offset.Add(int64(d))
	}
}

// Offset returns how far the clock has been advanced.
func (c *Clock) Offset() time.Duration { return time.Duration(c.offset.Load()) }

// skewedClock is one slot's view of the cluster clock: the cluster time
// plus the slot's skew, which SetSkew may change (also backwards, to
// model a node whose clock is behind).
type skewedClock struct {
	base *Clock
	skew atomic.Int64 // nanoseconds
}

func (c *skewedClock) Now() time.Time {
	return c.base.Now().Add(time.Duration(c.skew.Load()))
}

// Clock returns the cluster's clock.
func (c *Cluster) Clock() *Clock { return c.clock }

// SetSkew sets slot i's clock to the cluster clock plus d (d may be
// negative). It lasts across restarts.
func (c *Cluster) SetSkew(i int, d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.slotLocked(i).clock.skew.Store(int64(d))
}
