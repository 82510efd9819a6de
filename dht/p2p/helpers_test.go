package p2p

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/proto"

	"github.com/ringkv/ringkv/dht"
	"github.com/ringkv/ringkv/dht/pb"
)

// Test protocols.
const (
	protoEcho  dht.Protocol = "/ringkv/test-echo/1.0.0"
	protoOther dht.Protocol = "/ringkv/test-other/1.0.0"
)

// waitTimeout bounds every poll in these tests; it is a safety net, not a
// measured duration.
const waitTimeout = 10 * time.Second

// waitFor polls cond until it holds or waitTimeout passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// testConfig is DefaultConfig logging at debug into the test's output, which
// is shown only when the test fails (or with -v).
func testConfig(t testing.TB) Config {
	cfg := DefaultConfig()
	cfg.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	return cfg
}

// withRegistry returns cfg with a fresh registry.
func withRegistry(cfg Config) Config {
	cfg.Registerer = prometheus.NewRegistry()
	return cfg
}

// testNet is a mocknet of n hosts, linked and connected.
func testNet(t testing.TB, n int) (mocknet.Mocknet, []host.Host) {
	t.Helper()
	mn := mocknet.New()
	t.Cleanup(func() { _ = mn.Close() })
	hosts := make([]host.Host, n)
	for i := range hosts {
		h, err := mn.GenPeer()
		if err != nil {
			t.Fatal(err)
		}
		hosts[i] = h
	}
	if err := mn.LinkAll(); err != nil {
		t.Fatal(err)
	}
	if err := mn.ConnectAllButSelf(); err != nil {
		t.Fatal(err)
	}
	return mn, hosts
}

// newTransport builds a Transport closed at cleanup.
func newTransport(t testing.TB, h host.Host, cfg Config) *Transport {
	t.Helper()
	tr, err := New(h, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tr.Close() })
	return tr
}

// pair returns a client and a server Transport on a fresh mocknet, the
// server answering protoEcho with echo.
func pair(t testing.TB, clientCfg, serverCfg Config) (mocknet.Mocknet, *Transport, *Transport) {
	t.Helper()
	mn, hosts := testNet(t, 2)
	client := newTransport(t, hosts[0], clientCfg)
	server := newTransport(t, hosts[1], serverCfg)
	server.Handle(protoEcho, newRecord, echo)
	return mn, client, server
}

func newRecord() proto.Message { return &pb.Record{} }

// echo answers a record with itself.
func echo(_ context.Context, _ peer.ID, req proto.Message) (proto.Message, error) {
	return req, nil
}

// record returns a record with one version holding value.
func record(value []byte) *pb.Record {
	return &pb.Record{
		Versions: []*pb.Version{{Value: value, Dot: &pb.Dot{Actor: 7, Counter: 1}, Timestamp: 42}},
		Context:  []*pb.Dot{{Actor: 7, Counter: 1}},
	}
}

// callEcho calls protoEcho with rec and checks the echo.
func callEcho(ctx context.Context, t testing.TB, c *Transport, to peer.ID, rec *pb.Record) error {
	t.Helper()
	var got pb.Record
	if err := c.Call(ctx, to, protoEcho, rec, &got); err != nil {
		return err
	}
	if !proto.Equal(rec, &got) {
		t.Errorf("echo mismatch: sent %d versions, got %d", len(rec.GetVersions()), len(got.GetVersions()))
	}
	return nil
}

// counterValue reads a counter. (prometheus/testutil.ToFloat64 does the
// same, but its dependency github.com/kylelemons/godebug is not in go.mod.)
func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return -1
	}
	return m.GetCounter().GetValue()
}

// opened reads ringkv_p2p_streams_opened_total for p.
func opened(tr *Transport, p dht.Protocol) float64 {
	return counterValue(tr.m.opened.WithLabelValues(string(p)))
}

// badMessages reads ringkv_p2p_bad_messages_total for p and reason.
func badMessages(tr *Transport, p dht.Protocol, reason string) float64 {
	return counterValue(tr.m.bad.WithLabelValues(string(p), reason))
}

// calls reads ringkv_p2p_calls_total for p and outcome.
func calls(tr *Transport, p dht.Protocol, outcome string) float64 {
	return counterValue(tr.m.calls.WithLabelValues(string(p), outcome))
}

// serving reports how many incoming streams tr is serving.
func serving(tr *Transport) int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return len(tr.serving)
}
