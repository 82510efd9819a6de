package antientropy

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	rounds       *prometheus.CounterVec // runs by kind (round, bootstrap, drain) and outcome
	roundSeconds prometheus.Histogram   // duration of full rounds
	ranges       *prometheus.CounterVec // arcs compared, by result (equal, differ)
	keysPushed   prometheus.Counter     // records sent to peers
	keysPulled   prometheus.Counter     // records taken from peers
	bytes        *prometheus.CounterVec // sync message bytes by direction
	handedOff    prometheus.Counter     // records deleted after handoff
	tombstones   *prometheus.CounterVec // collection candidates by outcome (purged, kept)
	refused      *prometheus.CounterVec // bad peer requests by reason
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		rounds: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ringkv_antientropy_rounds_total", Help: "Anti-entropy runs by kind (round, bootstrap, drain) and outcome.",
		}, []string{"kind", "outcome"}),
		roundSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "ringkv_antientropy_round_duration_seconds", Help: "Duration of anti-entropy rounds.",
			Buckets: prometheus.ExponentialBuckets(0.01, 4, 10),
		}),
		ranges: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ringkv_antientropy_ranges_total", Help: "Arcs compared with a peer, by result.",
		}, []string{"result"}),
		keysPushed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ringkv_antientropy_keys_pushed_total", Help: "Records pushed to peers by anti-entropy, transfers and handoff.",
		}),
		keysPulled: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ringkv_antientropy_keys_pulled_total", Help: "Records pulled from peers by anti-entropy and transfers.",
		}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ringkv_antientropy_bytes_total", Help: "Sync message bytes this node sent and received as a requester.",
		}, []string{"direction"}),
		handedOff: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ringkv_antientropy_handoff_keys_total", Help: "Records of arcs this node no longer replicates, handed off and deleted.",
		}),
		tombstones: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ringkv_antientropy_tombstones_total", Help: "Deleted and expired records past the grace examined for collection, by outcome.",
		}, []string{"outcome"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ringkv_antientropy_refused_total", Help: "Sync requests refused as malformed or oversized, by reason.",
		}, []string{"reason"}),
	}
	if reg != nil {
		m.rounds = register(reg, m.rounds)
		m.roundSeconds = register(reg, m.roundSeconds)
		m.ranges = register(reg, m.ranges)
		m.keysPushed = register(reg, m.keysPushed)
		m.keysPulled = register(reg, m.keysPulled)
		m.bytes = register(reg, m.bytes)
		m.handedOff = register(reg, m.handedOff)
		m.tombstones = register(reg, m.tombstones)
		m.refused = register(reg, m.refused)
	}
	return m
}

// register registers c, or returns the collector already registered under
// its name (several syncers may share one registry).
func register[T prometheus.Collector](reg prometheus.Registerer, c T) T {
	err := reg.Register(c)
	if err == nil {
		return c
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(T); ok {
			return existing
		}
	}
	panic(err) // a name clash inside ringkv is a programming error
}
