package membership

import (
	"context"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ringkv/ringkv/dht"
	"github.com/ringkv/ringkv/dht/pb"
)

// probe is one probe of one member, planned under the lock.
type probe struct {
	target   peer.ID
	inc      uint64
	seq      uint64
	timeout  time.Duration // direct ping
	interval time.Duration // the whole probe, indirect included
	ping     *pb.SwimRequest
	helpers  []peer.ID // members asked for indirect pings
}

// probeRound probes the next member of the round-robin list: direct ping,
// then indirect pings and a second direct ping until the scaled interval
// ends, then suspicion. It updates the local health score.
func (m *Memberlist) probeRound(ctx context.Context) {
	p, ok := m.planProbe()
	if !ok {
		return
	}
	start := time.Now()
	if m.ping(ctx, p.target, p.ping, p.timeout) {
		m.finishProbe(p, "ack", -1)
		return
	}
	deadline := start.Add(p.interval)
	acked, nacks := m.indirect(ctx, p, deadline)
	switch {
	case acked:
		m.finishProbe(p, "indirect_ack", 0)
	case len(p.helpers) == 0:
		m.finishProbe(p, "failed", 1)
	default:
		// Helpers that did not even nack point at this node being slow.
		m.finishProbe(p, "failed", len(p.helpers)-nacks)
	}
}

// planProbe picks the target and builds the ping.
func (m *Memberlist) planProbe() (probe, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.left || m.closed {
		return probe{}, false
	}
	t := m.nextProbeTargetLocked()
	if t == nil {
		return probe{}, false
	}
	m.seq++
	p := probe{
		target:   t.ID,
		inc:      t.Incarnation,
		seq:      m.seq,
		timeout:  m.scaleLocked(m.cfg.ProbeTimeout),
		interval: m.scaleLocked(m.cfg.ProbeInterval),
	}
	var extra []update
	if t.State == dht.StateSuspect {
		// Tell the suspect, so it can refute at once.
		extra = append(extra, updateOf(t, m.self))
	}
	p.ping = &pb.SwimRequest{Kind: &pb.SwimRequest_Ping{Ping: &pb.SwimPing{
		Seq: p.seq, Target: []byte(t.ID), Updates: m.piggybackLocked(t.ID, extra...),
	}}}
	for _, h := range m.sampleLocked(m.cfg.IndirectChecks, func(ms *memberState) bool {
		return ms.ID != t.ID && isAliveState(ms.State)
	}) {
		p.helpers = append(p.helpers, h.ID)
	}
	return p, true
}

// nextProbeTargetLocked walks the shuffled list, reshuffling at its end,
// and returns the next live member other than self, or nil.
func (m *Memberlist) nextProbeTargetLocked() *memberState {
	for tries := 0; tries <= len(m.probeList); tries++ {
		if m.probeIdx >= len(m.probeList) {
			m.probeList = m.probeList[:0]
			for _, id := range m.ids {
				if ms := m.members[id]; ms != nil && ms.State.Live() {
					m.probeList = append(m.probeList, id)
				}
			}
			m.rng.Shuffle(len(m.probeList), func(i, j int) {
				m.probeList[i], m.probeList[j] = m.probeList[j], m.probeList[i]
			})
			m.probeIdx = 0
			if len(m.probeList) == 0 {
				return nil
			}
		}
		id := m.probeList[m.probeIdx]
		m.probeIdx++
		if ms := m.members[id]; ms != nil && ms.State.Live() {
			return ms
		}
	}
	return nil
}

// finishProbe applies the health delta and, on failure, suspects the target.
func (m *Memberlist) finishProbe(p probe, result string, delta int) {
	m.met.probes.WithLabelValues(result).Inc()
	now := m.clk.Now()
	m.mu.Lock()
	m.adjustHealthLocked(delta)
	if result == "failed" {
		m.log.Debug("probe failed", "peer", p.target.String(), "inc", p.inc)
		m.suspectLocked(p.target, p.inc, now)
	} else {
		m.heardLocked(p.target, now)
	}
	m.mu.Unlock()
	m.flushEvents()
}

// ping sends req to `to` and reports whether it acked within timeout.
func (m *Memberlist) ping(ctx context.Context, to peer.ID, req *pb.SwimRequest, timeout time.Duration) bool {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var ack pb.SwimAck
	if err := m.tr.Call(ctx, to, ProtocolSWIM, req, &ack); err != nil {
		return false
	}
	m.handleAck(to, &ack)
	return !ack.GetNack()
}

// handleAck merges the updates piggybacked on an answer.
func (m *Memberlist) handleAck(from peer.ID, ack *pb.SwimAck) {
	us, err := m.decodeUpdates(from, ack.GetUpdates())
	if err != nil {
		return
	}
	m.applyUpdates(from, us)
}

// indirect asks the probe's helpers to ping the target and, meanwhile,
// pings it directly once more with the rest of the interval. It returns
// whether anyone got an ack and how many helpers nacked.
func (m *Memberlist) indirect(ctx context.Context, p probe, deadline time.Time) (acked bool, nacks int) {
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	remaining := time.Until(deadline)
	// Helpers must answer before our deadline, so they get 80% of it.
	helperMS := uint32(max(remaining*8/10, time.Millisecond) / time.Millisecond)

	var mu sync.Mutex
	results := func(ack, nack bool) {
		mu.Lock()
		acked = acked || ack
		if nack {
			nacks++
		}
		mu.Unlock()
	}
	tasks := make([]func(), 0, len(p.helpers)+1)
	for _, h := range p.helpers {
		tasks = append(tasks, func() {
			m.mu.Lock()
			req := &pb.SwimRequest{Kind: &pb.SwimRequest_PingReq{PingReq: &pb.SwimPingReq{
				Seq: p.seq, Target: []byte(p.target), TimeoutMs: helperMS,
				Updates: m.piggybackLocked(h),
			}}}
			m.mu.Unlock()
			var ack pb.SwimAck
			if err := m.tr.Call(ctx, h, ProtocolSWIM, req, &ack); err != nil {
				results(false, false)
				return
			}
			m.handleAck(h, &ack)
			results(!ack.GetNack(), ack.GetNack())
		})
	}
	tasks = append(tasks, func() {
		results(m.ping(ctx, p.target, p.ping, time.Until(deadline)), false)
	})
	m.run(tasks)
	return acked, nacks
}

// run runs tasks in parallel, or one after another with SerialProbes, and
// waits for all of them.
func (m *Memberlist) run(tasks []func()) {
	if m.cfg.SerialProbes || len(tasks) == 1 {
		for _, t := range tasks {
			t()
		}
		return
	}
	var wg sync.WaitGroup
	for _, t := range tasks {
		wg.Go(t)
	}
	wg.Wait()
}
