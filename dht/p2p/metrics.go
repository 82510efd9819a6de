package p2p

import (
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Call outcomes, the values of the outcome label of ringkv_p2p_calls_total.
const (
	outcomeOK          = "ok"           // response decoded
	outcomeRemoteError = "remote_error" // the peer answered with an error
	outcomeUnreachable = "unreachable"  // dial, negotiation, timeout, reset, malformed answer
	outcomeTooLarge    = "too_large"    // request or response over MaxMessageSize
	outcomeClosed      = "closed"       // the Transport was closed
	outcomeOther       = "other"        // e.g. the request did not encode
)

// Reasons for ringkv_p2p_bad_messages_total: why a server reset a stream.
const (
	reasonTooLarge    = "too_large"   // length prefix over MaxMessageSize
	reasonMalformed   = "malformed"   // overlong length varint
	reasonTruncated   = "truncated"   // stream ended inside a frame
	reasonUndecodable = "undecodable" // payload is not the protocol's request message
)

// metrics holds the Transport's collectors. A nil *metrics records nothing,
// so a Transport without a Registerer pays no label lookups.
type metrics struct {
	calls    *prometheus.CounterVec   // protocol, outcome
	duration *prometheus.HistogramVec // protocol
	opened   *prometheus.CounterVec   // protocol
	retries  *prometheus.CounterVec   // protocol
	bad      *prometheus.CounterVec   // protocol, reason
	panics   *prometheus.CounterVec   // protocol
}

// newMetrics builds and registers the collectors, or returns nil for a nil
// registerer. A collector that is already registered with the same shape
// (another Transport on the same registry) is shared, not an error.
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	if reg == nil {
		return nil, nil
	}
	m := &metrics{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ringkv_p2p_calls_total",
			Help: "Outgoing peer calls by protocol and outcome.",
		}, []string{"protocol", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "ringkv_p2p_call_duration_seconds",
			Help:    "Duration of outgoing peer calls, including connect and retry.",
			Buckets: prometheus.ExponentialBucketsRange(50e-6, 10, 16),
		}, []string{"protocol"}),
		opened: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ringkv_p2p_streams_opened_total",
			Help: "Outgoing streams opened; with stream reuse far fewer than calls.",
		}, []string{"protocol"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ringkv_p2p_stale_stream_retries_total",
			Help: "Calls retried on a fresh stream because a pooled stream had been closed by the peer.",
		}, []string{"protocol"}),
		bad: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ringkv_p2p_bad_messages_total",
			Help: "Incoming requests rejected (stream reset) by protocol and reason.",
		}, []string{"protocol", "reason"}),
		panics: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ringkv_p2p_handler_panics_total",
			Help: "Handler panics recovered and answered with an internal error.",
		}, []string{"protocol"}),
	}
	var err error
	if m.calls, err = register(reg, m.calls); err != nil {
		return nil, err
	}
	if m.duration, err = register(reg, m.duration); err != nil {
		return nil, err
	}
	if m.opened, err = register(reg, m.opened); err != nil {
		return nil, err
	}
	if m.retries, err = register(reg, m.retries); err != nil {
		return nil, err
	}
	if m.bad, err = register(reg, m.bad); err != nil {
		return nil, err
	}
	if m.panics, err = register(reg, m.panics); err != nil {
		return nil, err
	}
	return m, nil
}

// register registers c, or returns the equal collector registered before.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	err := reg.Register(c)
	if err == nil {
		return c, nil
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing, nil
		}
	}
	return c, fmt.Errorf("p2p: register metrics: %w", err)
}

// call records a Call's outcome and its duration since start.
func (m *metrics) call(p string, err error, start time.Time) {
	if m == nil {
		return
	}
	m.calls.WithLabelValues(p, outcome(err)).Inc()
	m.duration.WithLabelValues(p).Observe(time.Since(start).Seconds())
}

func (m *metrics) streamOpened(p string) {
	if m != nil {
		m.opened.WithLabelValues(p).Inc()
	}
}

func (m *metrics) retried(p string) {
	if m != nil {
		m.retries.WithLabelValues(p).Inc()
	}
}

func (m *metrics) badMessage(p, reason string) {
	if m != nil {
		m.bad.WithLabelValues(p, reason).Inc()
	}
}

func (m *metrics) panicked(p string) {
	if m != nil {
		m.panics.WithLabelValues(p).Inc()
	}
}
