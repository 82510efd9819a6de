package replica

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	writes      *prometheus.CounterVec // coordinated writes by outcome
	reads       *prometheus.CounterVec // reads by outcome
	hinted      prometheus.Counter     // replica writes that went to a fallback
	handedOff   prometheus.Counter     // hints delivered
	hintsAged   prometheus.Counter     // hints dropped as older than HintMaxAge
	readRepairs prometheus.Counter     // stale replicas repaired by reads
	refused     *prometheus.CounterVec // bad peer requests by reason
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		writes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ringkv_replica_writes_total", Help: "Writes coordinated by this node, by outcome.",
		}, []string{"outcome"}),
		reads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ringkv_replica_reads_total", Help: "Quorum reads run by this node, by outcome.",
		}, []string{"outcome"}),
		hinted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ringkv_replica_hinted_writes_total", Help: "Replica writes sent to a fallback node with a hint.",
		}),
		handedOff: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ringkv_replica_hints_delivered_total", Help: "Hints handed off to their replica.",
		}),
		hintsAged: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ringkv_replica_hints_aged_out_total", Help: "Hints dropped undelivered because their newest version passed the hint max age.",
		}),
		readRepairs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ringkv_replica_read_repairs_total", Help: "Stale replicas repaired after a read.",
		}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ringkv_replica_refused_total", Help: "Peer requests refused as malformed, by reason.",
		}, []string{"reason"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.writes, m.reads, m.hinted, m.handedOff, m.hintsAged, m.readRepairs, m.refused} {
			if err := reg.Register(c); err != nil {
				var are prometheus.AlreadyRegisteredError
				if !errors.As(err, &are) {
					panic(err) // a name clash inside ringkv is a programming error
				}
			}
		}
	}
	return m
}
