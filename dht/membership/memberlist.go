package membership

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ringkv/ringkv/dht"
)

// Protocol IDs.
const (
	// ProtocolSWIM carries ping, ping-req, gossip and their acks/nacks, each
	// with piggybacked updates.
	ProtocolSWIM dht.Protocol = "/ringkv/swim/1.0.0"
	// ProtocolPushPull carries full member lists, both ways.
	ProtocolPushPull dht.Protocol = "/ringkv/pushpull/1.0.0"
)

// Errors returned to callers; test with errors.Is.
var (
	// ErrInvalidConfig: Config.Validate refused the configuration.
	ErrInvalidConfig = errors.New("membership: invalid config")
	// ErrInvalidMember: the local member given to New is not valid.
	ErrInvalidMember = errors.New("membership: invalid local member")
	// ErrInvalidState: SetState was given a state a node cannot set itself.
	ErrInvalidState = errors.New("membership: invalid state for the local node")
	// ErrStarted: Start was called twice.
	ErrStarted = errors.New("membership: already started")
	// ErrJoinFailed: no seed answered a join.
	ErrJoinFailed = errors.New("membership: no seed answered")
	// ErrLeaveIncomplete: Leave could not push the leave to enough members.
	ErrLeaveIncomplete = errors.New("membership: leave not announced to enough members")
	// ErrLeft: the local node has left; it cannot change state any more.
	ErrLeft = errors.New("membership: node has left")
	// ErrRefused: a peer's message was malformed or over a bound.
	ErrRefused = errors.New("membership: message refused")
)

// Event reports a member that was added (Prev is 0) or whose state,
// addresses, zone or capacity changed.
type Event struct {
	Member dht.Member
	Prev   dht.State
}

// Memberlist is one node's membership protocol instance.
type Memberlist struct {
	cfg  Config
	tr   dht.Transport
	clk  dht.Clock
	log  *slog.Logger
	met  *metrics
	self peer.ID

	mu        sync.Mutex
	rng       *rand.Rand
	members   map[peer.ID]*memberState // including self
	ids       []peer.ID                // every member but self, insertion order
	suspects  map[peer.ID]struct{}     // members with a running suspicion
	departed  map[peer.ID]struct{}     // dead and left members, to reap
	probeList []peer.ID
	probeIdx  int
	queue     broadcastQueue
	health    int // Lifeguard local health score, [0, AwarenessMaxMultiplier-1]
	seq       uint64
	storage   storageReport
	left      bool
	started   bool
	closed    bool
	next      schedule
	pending   []Event // made under mu, delivered by flushEvents

	emitMu   sync.Mutex
	draining bool
	subs     []func(Event)

	// complete: the member list is the cluster's (see Complete).
	complete atomic.Bool

	wake      chan struct{} // kicks the timer loop when a suspicion starts
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
}

type storageReport struct {
	want     int64     // last value given to SetStorage
	lastSent time.Time // when the last report was gossiped
}

// schedule holds when each periodic task is next due, in Clock time.
type schedule struct {
	probe, gossip, pushPull time.Time
}

// New builds a Memberlist for the local member self over tr. self.ID must
// be tr.Self(); empty Addrs default to tr.LocalAddrs(), a zero Capacity to
// 1 and a zero State to Normal.
func New(cfg Config, self dht.Member, tr dht.Transport, clk dht.Clock) (*Memberlist, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if tr == nil || clk == nil {
		return nil, fmt.Errorf("%w: nil transport or clock", ErrInvalidConfig)
	}
	self, err := normaliseSelf(self, tr)
	if err != nil {
		return nil, err
	}
	met, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	seed := cfg.Seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	m := &Memberlist{
		cfg:      cfg,
		tr:       tr,
		clk:      clk,
		log:      cmp.Or(cfg.Logger, slog.Default()).With("self", self.ID.String()),
		met:      met,
		self:     self.ID,
		rng:      rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		members:  make(map[peer.ID]*memberState),
		suspects: make(map[peer.ID]struct{}),
		departed: make(map[peer.ID]struct{}),
		queue:    newBroadcastQueue(),
		wake:     make(chan struct{}, 1),
	}
	now := clk.Now()
	ms := &memberState{Member: self, changed: now}
	ms.LastHeard = now
	ms.tokenCount, ms.tokenDigest = m.tokensOf(self.ID, self.Capacity)
	m.members[self.ID] = ms
	m.complete.Store(!cfg.StartIncomplete)
	m.storage = storageReport{want: self.StorageUsed, lastSent: now}
	m.queue.push(m.selfUpdateLocked())
	m.next = schedule{
		probe:    now.Add(time.Duration(m.rng.Int64N(int64(cfg.ProbeInterval)))),
		gossip:   now.Add(cfg.GossipInterval),
		pushPull: now.Add(cfg.PushPullInterval/2 + time.Duration(m.rng.Int64N(int64(cfg.PushPullInterval/2)+1))),
	}
	return m, nil
}

func normaliseSelf(self dht.Member, tr dht.Transport) (dht.Member, error) {
	if self.ID == "" {
		self.ID = tr.Self()
	}
	if self.ID != tr.Self() {
		return self, fmt.Errorf("%w: ID %s is not the transport's %s", ErrInvalidMember, self.ID, tr.Self())
	}
	if len(self.Addrs) == 0 {
		self.Addrs = tr.LocalAddrs()
	}
	self.Addrs = slices.Clone(self.Addrs)
	if self.Capacity == 0 {
		self.Capacity = 1
	}
	if self.State == 0 {
		self.State = dht.StateNormal
	}
	if !isAliveState(self.State) {
		return self, fmt.Errorf("%w: state %v", ErrInvalidMember, self.State)
	}
	if reason := checkFields(self); reason != "" {
		return self, fmt.Errorf("%w: %s", ErrInvalidMember, reason)
	}
	return self, nil
}

// tokensOf returns the token count and digest Config.Tokens derives, or
// zeros without it.
func (m *Memberlist) tokensOf(id peer.ID, capacity float64) (uint32, uint64) {
	if m.cfg.Tokens == nil {
		return 0, 0
	}
	n, d := m.cfg.Tokens(id, capacity)
	return uint32(n), d
}

// Subscribe registers fn for every later Event. It does not replay the
// current members: subscribe first, then read Members(), and treat events
// as idempotent.
func (m *Memberlist) Subscribe(fn func(ev Event)) {
	m.emitMu.Lock()
	m.subs = append(m.subs, fn)
	m.emitMu.Unlock()
}

// flushEvents delivers pending events outside mu. One goroutine delivers at
// a time; events queued meanwhile are delivered by it, in order.
func (m *Memberlist) flushEvents() {
	m.emitMu.Lock()
	if m.draining {
		m.emitMu.Unlock()
		return
	}
	m.draining = true
	for {
		m.mu.Lock()
		evs := m.pending
		m.pending = nil
		m.mu.Unlock()
		if len(evs) == 0 {
			m.draining = false
			m.emitMu.Unlock()
			return
		}
		subs := slices.Clone(m.subs)
		m.emitMu.Unlock()
		for _, ev := range evs {
			for _, fn := range subs {
				fn(ev)
			}
		}
		m.emitMu.Lock()
	}
}

// Complete reports whether the member list is the cluster's: the node
// founded its cluster (Config.StartIncomplete unset), or it has merged the
// full list of a peer whose list was complete, by either side's push-pull,
// or MarkComplete was called. Until then a node that just started knows
// only the members gossip happened to name, and a ring drawn from them
// places keys on the wrong replicas. Push-pulls carry the flag, so a
// whole cluster restarting at once stays incomplete until one node gives
// up waiting and calls MarkComplete.
func (m *Memberlist) Complete() bool { return m.complete.Load() }

// MarkComplete declares the member list complete, for a node that waited
// long enough for a complete peer (see Complete).
func (m *Memberlist) MarkComplete() { m.complete.Store(true) }

// Members returns every known member, including dead and left ones until
// they are reaped, sorted by ID.
func (m *Memberlist) Members() []dht.Member {
	return m.collect(func(dht.State) bool { return true })
}

// Live returns the members whose state is Live (joining, normal, leaving,
// suspect), sorted by ID.
func (m *Memberlist) Live() []dht.Member {
	return m.collect(dht.State.Live)
}

func (m *Memberlist) collect(keep func(dht.State) bool) []dht.Member {
	m.mu.Lock()
	out := make([]dht.Member, 0, len(m.members))
	for _, ms := range m.members {
		if keep(ms.State) {
			out = append(out, ms.public())
		}
	}
	m.mu.Unlock()
	slices.SortFunc(out, func(a, b dht.Member) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// Member returns what the node knows about id.
func (m *Memberlist) Member(id peer.ID) (dht.Member, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ms, ok := m.members[id]
	if !ok {
		return dht.Member{}, false
	}
	return ms.public(), true
}

// Local returns the local member as the cluster sees it.
func (m *Memberlist) Local() dht.Member {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.members[m.self].public()
}

// NumLive returns the number of live members, the local node included.
func (m *Memberlist) NumLive() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, ms := range m.members {
		if ms.State.Live() {
			n++
		}
	}
	return n
}

// HealthScore returns the Lifeguard local health score: 0 is healthy; the
// probe timeout and interval are scaled by score+1.
func (m *Memberlist) HealthScore() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.health
}

// SetState announces a new state of the local node: joining, normal or
// leaving. It bumps the incarnation and gossips it.
func (m *Memberlist) SetState(s dht.State) error {
	if !isAliveState(s) {
		return fmt.Errorf("%w: %v", ErrInvalidState, s)
	}
	m.mu.Lock()
	if m.left {
		m.mu.Unlock()
		return ErrLeft
	}
	me := m.members[m.self]
	if me.State != s {
		prev := me.State
		me.State = s
		me.changed = m.clk.Now()
		me.Incarnation++
		m.queue.push(m.selfUpdateLocked())
		m.pending = append(m.pending, Event{Member: me.public(), Prev: prev})
	}
	m.mu.Unlock()
	m.flushEvents()
	return nil
}

// SetStorage records the local node's storage use in bytes. It is gossiped
// (as an incarnation-bumped update) at most every StorageReportInterval.
func (m *Memberlist) SetStorage(bytes int64) {
	m.mu.Lock()
	m.storage.want = max(bytes, 0)
	m.mu.Unlock()
}

// reportStorageLocked gossips the storage use if it changed and the last
// report is old enough.
func (m *Memberlist) reportStorageLocked(now time.Time) {
	me := m.members[m.self]
	if m.left || me.StorageUsed == m.storage.want ||
		now.Sub(m.storage.lastSent) < m.cfg.StorageReportInterval {
		return
	}
	me.StorageUsed = m.storage.want
	me.Incarnation++
	m.storage.lastSent = now
	m.queue.push(m.selfUpdateLocked())
}

// metrics are the ringkv_membership_* collectors of one Memberlist.
type metrics struct {
	refused *prometheus.CounterVec // reason
	probes  *prometheus.CounterVec // result: ack, indirect_ack, failed
	refutes prometheus.Counter
	deaths  prometheus.Counter
	health  prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ringkv_membership_refused_total",
			Help: "Remote members, updates or messages refused as malformed or over a bound, by reason.",
		}, []string{"reason"}),
		probes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ringkv_membership_probes_total",
			Help: "Probes of other members, by result (ack, indirect_ack, failed).",
		}, []string{"result"}),
		refutes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ringkv_membership_refutations_total",
			Help: "Times the local node refuted a suspicion or death claim about itself.",
		}),
		deaths: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ringkv_membership_declared_dead_total",
			Help: "Members the local node declared dead when their suspicion timed out.",
		}),
		health: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ringkv_membership_health_score",
			Help: "Lifeguard local health score; probe timeout and interval are scaled by score+1.",
		}),
	}
	for _, r := range refusalReasons {
		m.refused.WithLabelValues(r)
	}
	for _, r := range []string{"ack", "indirect_ack", "failed"} {
		m.probes.WithLabelValues(r)
	}
	if reg == nil {
		return m, nil
	}
	var errs []error
	for _, c := range []prometheus.Collector{m.refused, m.probes, m.refutes, m.deaths, m.health} {
		if err := reg.Register(c); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("%w: metrics: %w", ErrInvalidConfig, err)
	}
	return m, nil
}
