package p2p

import (
	"context"
	"errors"
	"io"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/protocol"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"

	"github.com/ringkv/ringkv/dht"
	"github.com/ringkv/ringkv/dht/pb"
)

// Tests and benchmarks over real libp2p hosts on loopback: real stream
// deadlines, real multiplexers.

var loopbackTransports = []struct {
	name   string
	listen string
}{
	{"TCP", "/ip4/127.0.0.1/tcp/0"},
	{"QUIC", "/ip4/127.0.0.1/udp/0/quic-v1"},
}

// realHost is a libp2p host listening on one loopback address, without
// relay or port mapping, closed at cleanup. Tests use libp2p's default
// resource limits. Benchmarks lift them: the defaults allow 64 inbound
// streams per peer and protocol, which stream-per-request at -c 50
// overruns (streams linger half-closed), resetting calls.
func realHost(tb testing.TB, listen string) host.Host {
	tb.Helper()
	opts := []libp2p.Option{libp2p.ListenAddrStrings(listen), libp2p.DisableRelay()}
	if _, bench := tb.(*testing.B); bench {
		rm, err := rcmgr.NewResourceManager(rcmgr.NewFixedLimiter(rcmgr.InfiniteLimits))
		if err != nil {
			tb.Fatal(err)
		}
		opts = append(opts, libp2p.ResourceManager(rm))
	}
	h, err := libp2p.New(opts...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = h.Close() })
	return h
}

// loopbackPair returns a client and an echo server on two real hosts; the
// client learns the server's addresses through AddAddrs, as from gossip.
func loopbackPair(tb testing.TB, listen string, clientCfg, serverCfg Config) (*Transport, *Transport) {
	tb.Helper()
	client := newTransport(tb, realHost(tb, listen), clientCfg)
	server := newTransport(tb, realHost(tb, listen), serverCfg)
	server.Handle(protoEcho, newRecord, echo)
	client.AddAddrs(server.Self(), server.LocalAddrs())
	return client, server
}

func TestLoopbackIdleTimeoutAndRetry(t *testing.T) {
	for _, tc := range loopbackTransports {
		t.Run(tc.name, func(t *testing.T) {
			serverCfg := testConfig(t)
			serverCfg.IdleTimeout = 200 * time.Millisecond
			serverCfg.PoolIdleTimeout = 100 * time.Millisecond
			// The client keeps streams far longer than the server, so the
			// server's idle close races the client's reuse.
			client, server := loopbackPair(t, tc.listen, withRegistry(testConfig(t)), serverCfg)
			if err := callEcho(t.Context(), t, client, server.Self(), record([]byte("first"))); err != nil {
				t.Fatal(err)
			}
			if client.pool.size() != 1 {
				t.Fatal("stream not pooled")
			}
			waitFor(t, "server to close the idle stream", func() bool { return serving(server) == 0 })
			if err := callEcho(t.Context(), t, client, server.Self(), record([]byte("second"))); err != nil {
				t.Fatal(err)
			}
			if got := counterValue(client.m.retries.WithLabelValues(string(protoEcho))); got != 1 {
				t.Fatalf("retries = %v, want 1", got)
			}
			if got := opened(client, protoEcho); got != 2 {
				t.Fatalf("opened = %v, want 2", got)
			}
		})
	}
}

func TestLoopbackCallTimeout(t *testing.T) {
	for _, tc := range loopbackTransports {
		t.Run(tc.name, func(t *testing.T) {
			clientCfg := testConfig(t)
			clientCfg.CallTimeout = 50 * time.Millisecond
			serverCfg := testConfig(t)
			serverCfg.CallTimeout = 100 * time.Millisecond
			client, server := loopbackPair(t, tc.listen, clientCfg, serverCfg)
			_, handlerDone := blockingServer(server)
			// No deadline in ctx: CallTimeout bounds the call.
			err := client.Call(context.Background(), server.Self(), protoOther, record(nil), &pb.Record{})
			if !errors.Is(err, dht.ErrUnreachable) || !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("err = %v, want ErrUnreachable wrapping a deadline", err)
			}
			if err := waitErr(t, handlerDone, "handler ctx to end"); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("handler ctx err = %v", err)
			}
		})
	}
}

// benchConcurrency is the number of concurrent callers in the parallel
// benchmarks, as in the peers' -c 50 figures.
const benchConcurrency = 50

func setParallelism(b *testing.B) {
	b.SetParallelism(max(1, benchConcurrency/runtime.GOMAXPROCS(0)))
}

func reportRate(b *testing.B) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "calls/s")
}

// BenchmarkCallTCP and BenchmarkCallQUIC measure Call round trips of a
// 100-byte record to an echo handler: Reuse (pooled streams) against
// StreamPerRequest (MaxIdleStreams 0), with 50 concurrent callers (c50) and
// one (c1).
func BenchmarkCallTCP(b *testing.B)  { benchCall(b, loopbackTransports[0].listen) }
func BenchmarkCallQUIC(b *testing.B) { benchCall(b, loopbackTransports[1].listen) }

func benchCall(b *testing.B, listen string) {
	modes := []struct {
		name    string
		maxIdle int
	}{
		{"Reuse", 64},
		{"StreamPerRequest", 0},
	}
	for _, mode := range modes {
		b.Run(mode.name, func(b *testing.B) {
			cfg := DefaultConfig()
			cfg.Logger = nil
			cfg.MaxIdleStreams = mode.maxIdle
			client, server := loopbackPair(b, listen, cfg, cfg)
			req := record(make([]byte, 100))
			to := server.Self()
			b.Run("c50", func(b *testing.B) {
				b.ReportAllocs()
				setParallelism(b)
				b.RunParallel(func(pb_ *testing.PB) {
					var resp pb.Record
					for pb_.Next() {
						if err := client.Call(context.Background(), to, protoEcho, req, &resp); err != nil {
							b.Error(err)
							return
						}
					}
				})
				reportRate(b)
			})
			b.Run("c1", func(b *testing.B) {
				b.ReportAllocs()
				var resp pb.Record
				for b.Loop() {
					if err := client.Call(context.Background(), to, protoEcho, req, &resp); err != nil {
						b.Fatal(err)
					}
				}
				reportRate(b)
			})
		})
	}
}

// BenchmarkRawEchoTCP and BenchmarkRawEchoQUIC are the baseline measured in
// the same run: bare libp2p streams echoing 100 bytes, no framing, no
// protobuf, no pool (Reuse keeps one stream per goroutine).
func BenchmarkRawEchoTCP(b *testing.B)  { benchRawEcho(b, loopbackTransports[0].listen) }
func BenchmarkRawEchoQUIC(b *testing.B) { benchRawEcho(b, loopbackTransports[1].listen) }

const rawEcho protocol.ID = "/ringkv/bench-raw-echo/1.0.0"

func benchRawEcho(b *testing.B, listen string) {
	client, server := realHost(b, listen), realHost(b, listen)
	var wg sync.WaitGroup
	b.Cleanup(wg.Wait)
	server.SetStreamHandler(rawEcho, func(s network.Stream) {
		wg.Add(1)
		defer wg.Done()
		buf := make([]byte, 100)
		for {
			if _, err := io.ReadFull(s, buf); err != nil {
				_ = s.Close()
				return
			}
			if _, err := s.Write(buf); err != nil {
				_ = s.Reset()
				return
			}
		}
	})
	client.Peerstore().AddAddrs(server.ID(), server.Addrs(), addrTTL)
	roundTrip := func(s network.Stream, buf []byte) error {
		if _, err := s.Write(buf); err != nil {
			return err
		}
		_, err := io.ReadFull(s, buf)
		return err
	}
	for _, reuse := range []bool{true, false} {
		name := map[bool]string{true: "Reuse", false: "StreamPerRequest"}[reuse]
		b.Run(name+"/c50", func(b *testing.B) {
			setParallelism(b)
			b.RunParallel(func(pb_ *testing.PB) {
				buf := make([]byte, 100)
				var s network.Stream
				defer func() {
					if s != nil {
						_ = s.Close()
					}
				}()
				for pb_.Next() {
					if s == nil {
						var err error
						if s, err = client.NewStream(context.Background(), server.ID(), rawEcho); err != nil {
							b.Error(err)
							return
						}
					}
					if err := roundTrip(s, buf); err != nil {
						b.Error(err)
						return
					}
					if !reuse {
						_ = s.Close()
						s = nil
					}
				}
			})
			reportRate(b)
		})
	}
}
