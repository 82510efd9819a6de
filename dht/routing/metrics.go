package routing

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Lookup outcomes, the label of ringkv_routing_lookups_total.
const (
	outcomeLocal  = "local"  // the asking node owns the position: no hop
	outcomeOK     = "ok"     // an owner answered
	outcomeFailed = "failed" // no owner answered
)

// metrics are the ringkv_routing_* collectors of one Router. A nil
// *metrics (no Registerer) records nothing, so a simulator of a million
// routers does not keep a million histograms.
type metrics struct {
	lookups *prometheus.CounterVec // outcome
	hops    prometheus.Histogram
	peers   prometheus.Gauge
	refused *prometheus.CounterVec // reason
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	if reg == nil {
		return nil, nil
	}
	m := &metrics{
		lookups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ringkv_routing_lookups_total",
			Help: "Lookups of a ring position's owner, by outcome (local, ok, failed).",
		}, []string{"outcome"}),
		hops: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "ringkv_routing_lookup_hops",
			Help:    "Hops of successful lookups: sequential query rounds (iterative) or answering forwards (recursive).",
			Buckets: []float64{0, 1, 2, 3, 4, 5, 6, 8, 10, 12, 16, 24, 32},
		}),
		peers: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ringkv_routing_table_peers",
			Help: "Distinct peers in the routing state (successor lists, predecessors, fingers, cache), as of the last stabilization round.",
		}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ringkv_routing_refused_total",
			Help: "Remote peer entries, answers or requests refused as malformed or over a bound, by reason.",
		}, []string{"reason"}),
	}
	for _, o := range []string{outcomeLocal, outcomeOK, outcomeFailed} {
		m.lookups.WithLabelValues(o)
	}
	for _, r := range refusalReasons {
		m.refused.WithLabelValues(r)
	}
	var errs []error
	for _, c := range []prometheus.Collector{m.lookups, m.hops, m.peers, m.refused} {
		if err := reg.Register(c); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("%w: metrics: %w", ErrInvalidConfig, err)
	}
	return m, nil
}

func (m *metrics) lookup(outcome string, hops int) {
	if m == nil {
		return
	}
	m.lookups.WithLabelValues(outcome).Inc()
	if outcome != outcomeFailed {
		m.hops.Observe(float64(hops))
	}
}

func (m *metrics) refuse(reason string) {
	if m == nil {
		return
	}
	m.refused.WithLabelValues(reason).Inc()
}

func (m *metrics) tableSize(n int) {
	if m == nil {
		return
	}
	m.peers.Set(float64(n))
}
