package p2p

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"
	"golang.org/x/sync/errgroup"
	"google.golang.org/protobuf/proto"

	"github.com/ringkv/ringkv/dht"
	"github.com/ringkv/ringkv/dht/pb"
)

func TestCallRoundTrip(t *testing.T) {
	_, client, server := pair(t, testConfig(t), testConfig(t))
	tests := []struct {
		name string
		rec  *pb.Record
	}{
		{"empty record", &pb.Record{}},
		{"small value", record([]byte("v"))},
		{"tombstone with expiry", &pb.Record{Versions: []*pb.Version{{Tombstone: true}}, ExpiresAt: 99}},
		{"siblings", &pb.Record{Versions: []*pb.Version{
			{Value: []byte("a"), Dot: &pb.Dot{Actor: 1, Counter: 1}},
			{Value: []byte("b"), Dot: &pb.Dot{Actor: 2, Counter: 1}},
		}}},
		{"1 MiB value", record(bytes.Repeat([]byte{0xab}, 1<<20))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := callEcho(t.Context(), t, client, server.Self(), tt.rec); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestRemoteError(t *testing.T) {
	_, client, server := pair(t, testConfig(t), testConfig(t))
	server.Handle(protoOther, newRecord, func(_ context.Context, _ peer.ID, req proto.Message) (proto.Message, error) {
		return nil, errors.New(string(req.(*pb.Record).GetVersions()[0].GetValue()))
	})
	tests := []struct {
		name string
		msg  string
		want string
	}{
		{"short", "no quorum", "no quorum"},
		{"long is cut to 1 KiB", strings.Repeat("x", 5000), strings.Repeat("x", maxErrorMessage)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := client.Call(t.Context(), server.Self(), protoOther, record([]byte(tt.msg)), &pb.Record{})
			var re *dht.RemoteError
			if !errors.As(err, &re) {
				t.Fatalf("err = %v, want *dht.RemoteError", err)
			}
			if re.Message != tt.want || re.Peer != server.Self().String() {
				t.Fatalf("got peer %s message %q", re.Peer, re.Message)
			}
			if errors.Is(err, dht.ErrUnreachable) {
				t.Fatal("a remote error must not be ErrUnreachable")
			}
		})
	}
	// The stream stays usable after a remote error: one stream for all calls.
	if err := callEcho(t.Context(), t, client, server.Self(), record([]byte("ok"))); err != nil {
		t.Fatal(err)
	}
}

func TestHandlerPanic(t *testing.T) {
	_, client, server := pair(t, testConfig(t), withRegistry(testConfig(t)))
	server.Handle(protoEcho, newRecord, func(ctx context.Context, from peer.ID, req proto.Message) (proto.Message, error) {
		if string(req.(*pb.Record).GetVersions()[0].GetValue()) == "panic" {
			panic("handler bug")
		}
		return echo(ctx, from, req)
	})
	for i := range 3 {
		err := client.Call(t.Context(), server.Self(), protoEcho, record([]byte("panic")), &pb.Record{})
		var re *dht.RemoteError
		if !errors.As(err, &re) || re.Message != "internal error" {
			t.Fatalf("call %d: err = %v, want remote internal error", i, err)
		}
		if err := callEcho(t.Context(), t, client, server.Self(), record([]byte("fine"))); err != nil {
			t.Fatalf("call %d after panic: %v", i, err)
		}
	}
	if got := counterValue(server.m.panics.WithLabelValues(string(protoEcho))); got != 3 {
		t.Fatalf("panics counted = %v, want 3", got)
	}
}

func TestUnknownProtocol(t *testing.T) {
	_, client, server := pair(t, withRegistry(testConfig(t)), testConfig(t))
	err := client.Call(t.Context(), server.Self(), protoOther, record(nil), &pb.Record{})
	if !errors.Is(err, dht.ErrUnreachable) || !errors.Is(err, dht.ErrNotSent) || !strings.Contains(err.Error(), "protocol not supported") {
		t.Fatalf("err = %v, want ErrUnreachable, ErrNotSent: protocol not supported", err)
	}
	if got := calls(client, protoOther, outcomeUnreachable); got != 1 {
		t.Fatalf("unreachable calls = %v, want 1", got)
	}
}

func TestUnknownPeer(t *testing.T) {
	_, hosts := testNet(t, 1)
	client := newTransport(t, hosts[0], testConfig(t))
	_, other := testNet(t, 1) // another mocknet: no link, no addresses
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	err := client.Call(ctx, other[0].ID(), protoEcho, record(nil), &pb.Record{})
	if !errors.Is(err, dht.ErrUnreachable) || !errors.Is(err, dht.ErrNotSent) || !strings.Contains(err.Error(), "connect") {
		t.Fatalf("err = %v, want ErrUnreachable, ErrNotSent: connect", err)
	}
}

func TestRequestTooLarge(t *testing.T) {
	cfg := withRegistry(testConfig(t))
	cfg.MaxMessageSize = 4 << 10
	var handled atomic.Int64
	_, client, server := pair(t, cfg, testConfig(t))
	server.Handle(protoEcho, newRecord, func(ctx context.Context, from peer.ID, req proto.Message) (proto.Message, error) {
		handled.Add(1)
		return echo(ctx, from, req)
	})
	err := client.Call(t.Context(), server.Self(), protoEcho, record(make([]byte, 5<<10)), &pb.Record{})
	if !errors.Is(err, dht.ErrMessageTooLarge) || errors.Is(err, dht.ErrUnreachable) {
		t.Fatalf("err = %v, want ErrMessageTooLarge only", err)
	}
	if n := opened(client, protoEcho); n != 0 {
		t.Fatalf("%v streams opened for a request that must not be sent", n)
	}
	if handled.Load() != 0 || serving(server) != 0 {
		t.Fatal("the server saw the oversized request")
	}
	if got := calls(client, protoEcho, outcomeTooLarge); got != 1 {
		t.Fatalf("too_large calls = %v, want 1", got)
	}
}

func TestResponseTooLarge(t *testing.T) {
	small := testConfig(t)
	small.MaxMessageSize = 4 << 10
	tests := []struct {
		name              string
		client, server    Config
		wantTooLarge      bool // client sees ErrMessageTooLarge
		wantRemoteTooLarg bool // server refuses to send it
	}{
		{"over the client's limit", small, testConfig(t), true, false},
		{"over the server's limit", testConfig(t), small, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, client, server := pair(t, tt.client, tt.server)
			server.Handle(protoOther, newRecord, func(context.Context, peer.ID, proto.Message) (proto.Message, error) {
				return record(make([]byte, 8<<10)), nil
			})
			err := client.Call(t.Context(), server.Self(), protoOther, record(nil), &pb.Record{})
			var re *dht.RemoteError
			switch {
			case tt.wantTooLarge && !errors.Is(err, dht.ErrMessageTooLarge):
				t.Fatalf("err = %v, want ErrMessageTooLarge", err)
			case tt.wantRemoteTooLarg && (!errors.As(err, &re) || !strings.Contains(re.Message, "too large")):
				t.Fatalf("err = %v, want a remote 'too large' error", err)
			}
			// The node keeps serving other calls.
			if err := callEcho(t.Context(), t, client, server.Self(), record([]byte("x"))); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestBadFramesResetStream(t *testing.T) {
	tests := []struct {
		name   string
		bytes  []byte
		reason string
	}{
		{"length over max", frame(1<<30, nil), reasonTooLarge},
		{"overlong varint", bytes.Repeat([]byte{0x80}, 12), reasonMalformed},
		{"truncated body", frame(100, []byte("abc")), reasonTruncated},
		{"not a record", frame(3, []byte{0xff, 0xff, 0xff}), reasonUndecodable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, client, server := pair(t, testConfig(t), withRegistry(testConfig(t)))
			s, err := client.Host().NewStream(t.Context(), server.Self(), protocol.ID(protoEcho))
			if err != nil {
				t.Fatal(err)
			}
			defer s.Reset()
			if _, err := s.Write(tt.bytes); err != nil {
				t.Fatal(err)
			}
			_ = s.CloseWrite()
			if _, err := s.Read(make([]byte, 1)); err == nil {
				t.Fatal("read a response to a bad frame")
			}
			waitFor(t, "bad message counted", func() bool {
				return badMessages(server, protoEcho, tt.reason) == 1
			})
			waitFor(t, "stream released", func() bool { return serving(server) == 0 })
			// The server keeps serving well-formed calls.
			if err := callEcho(t.Context(), t, client, server.Self(), record([]byte("x"))); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// blockingServer answers protoOther by blocking until its context ends. A
// handler that starts signals started; one that ends reports its
// context's error on done.
func blockingServer(server *Transport) (started <-chan struct{}, done <-chan error) {
	start, end := make(chan struct{}, 16), make(chan error, 16)
	server.Handle(protoOther, newRecord, func(ctx context.Context, _ peer.ID, _ proto.Message) (proto.Message, error) {
		start <- struct{}{}
		<-ctx.Done()
		end <- ctx.Err()
		return nil, ctx.Err()
	})
	return start, end
}

func waitErr(t *testing.T, ch <-chan error, what string) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(waitTimeout):
		t.Fatalf("timed out waiting for %s", what)
		return nil
	}
}

func TestCallDeadline(t *testing.T) {
	serverCfg := testConfig(t)
	serverCfg.CallTimeout = 200 * time.Millisecond // bounds the blocked handler
	_, client, server := pair(t, withRegistry(testConfig(t)), serverCfg)
	_, handlerDone := blockingServer(server)

	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	err := client.Call(ctx, server.Self(), protoOther, record(nil), &pb.Record{})
	if !errors.Is(err, dht.ErrUnreachable) || !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, dht.ErrNotSent) {
		t.Fatalf("err = %v, want ErrUnreachable wrapping a deadline, not ErrNotSent (the handler runs)", err)
	}
	if err := waitErr(t, handlerDone, "the handler's context to end"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("handler ctx err = %v, want DeadlineExceeded", err)
	}
	// The timed-out stream was reset, not pooled; the next call works.
	if client.pool.size() != 0 {
		t.Fatal("a timed-out stream was pooled")
	}
	if err := callEcho(t.Context(), t, client, server.Self(), record([]byte("x"))); err != nil {
		t.Fatal(err)
	}
}

func TestCallCancel(t *testing.T) {
	_, client, server := pair(t, testConfig(t), testConfig(t))
	handlerStarted, handlerDone := blockingServer(server)
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() { errc <- client.Call(ctx, server.Self(), protoOther, record(nil), &pb.Record{}) }()
	// Wait for the handler, not the stream: a request cancelled before
	// the server read it never reaches a handler.
	select {
	case <-handlerStarted:
	case <-time.After(waitTimeout):
		t.Fatal("timed out waiting for the handler to start")
	}
	cancel()
	if err := waitErr(t, errc, "Call to return"); !errors.Is(err, dht.ErrUnreachable) || !errors.Is(err, context.Canceled) || errors.Is(err, dht.ErrNotSent) {
		t.Fatalf("err = %v, want ErrUnreachable wrapping context.Canceled, not ErrNotSent (the handler runs)", err)
	}
	// Close cancels the handler's context and waits for it.
	if err := server.Close(); err != nil {
		t.Fatal(err)
	}
	if err := waitErr(t, handlerDone, "handler to end"); !errors.Is(err, context.Canceled) {
		t.Fatalf("handler ctx err = %v, want Canceled", err)
	}
}

func TestStreamReuse(t *testing.T) {
	const n = 20
	tests := []struct {
		name       string
		maxIdle    int
		wantOpened float64
	}{
		{"reuse", 32, 1},
		{"stream per request", 0, n},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := withRegistry(testConfig(t))
			cfg.MaxIdleStreams = tt.maxIdle
			_, client, server := pair(t, cfg, testConfig(t))
			for i := range n {
				if err := callEcho(t.Context(), t, client, server.Self(), record([]byte{byte(i)})); err != nil {
					t.Fatal(err)
				}
			}
			if got := opened(client, protoEcho); got != tt.wantOpened {
				t.Fatalf("opened %v streams for %d calls, want %v", got, n, tt.wantOpened)
			}
			waitFor(t, "closed streams released by the server", func() bool {
				return serving(server) == min(tt.maxIdle, 1)
			})
		})
	}
}

func TestConcurrentCalls(t *testing.T) {
	const goroutines, each = 50, 20
	_, client, server := pair(t, withRegistry(testConfig(t)), testConfig(t))
	var g errgroup.Group
	for i := range goroutines {
		g.Go(func() error {
			for j := range each {
				rec := record(fmt.Appendf(nil, "%d/%d", i, j))
				var got pb.Record
				if err := client.Call(t.Context(), server.Self(), protoEcho, rec, &got); err != nil {
					return err
				}
				if !proto.Equal(rec, &got) {
					return fmt.Errorf("goroutine %d call %d: answer to another request", i, j)
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	if got := calls(client, protoEcho, outcomeOK); got != goroutines*each {
		t.Fatalf("ok calls = %v, want %d", got, goroutines*each)
	}
	if got := opened(client, protoEcho); got >= goroutines*each {
		t.Fatalf("opened %v streams for %d calls: no reuse", got, goroutines*each)
	}
	if got := client.pool.size(); got > client.cfg.MaxIdleStreams {
		t.Fatalf("pool holds %d idle streams, cap %d", got, client.cfg.MaxIdleStreams)
	}
}

// TestResetPooledStream: a pooled stream the peer reset is dropped and
// replaced; a call that went out on it before the reset was seen is not
// resent (see TestNoResendAfterTaken). The retry of a stream the peer
// closed cleanly is in TestLoopbackIdleTimeoutAndRetry.
func TestResetPooledStream(t *testing.T) {
	tests := []struct {
		name string
		// failsOnce: the next call finds the pooled stream reset after its
		// request went out (mocknet buffers the write), so the peer may
		// have taken it: that call fails and is not resent.
		failsOnce bool
		breakIt   func(t *testing.T, env *retryEnv)
	}{
		{"server transport restarted", true, func(t *testing.T, env *retryEnv) {
			_ = env.server.Close()
			env.server = newTransport(t, env.serverHost, testConfig(t))
			env.server.Handle(protoEcho, newRecord, echo)
		}},
		{"server reset its streams", true, func(t *testing.T, env *retryEnv) {
			env.server.mu.Lock()
			for s := range env.server.serving {
				_ = s.Reset()
			}
			env.server.mu.Unlock()
			waitFor(t, "server streams gone", func() bool { return serving(env.server) == 0 })
		}},
		// The disconnect notification empties the pool: nothing is reused.
		{"connection dropped", false, func(t *testing.T, env *retryEnv) {
			if err := env.mn.DisconnectPeers(env.client.Self(), env.serverHost.ID()); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "pool emptied on disconnect", func() bool { return env.client.pool.size() == 0 })
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mn, client, server := pair(t, withRegistry(testConfig(t)), testConfig(t))
			env := &retryEnv{mn: mn, client: client, server: server, serverHost: server.Host()}
			if err := callEcho(t.Context(), t, client, server.Self(), record([]byte("before"))); err != nil {
				t.Fatal(err)
			}
			tt.breakIt(t, env)
			err := callEcho(t.Context(), t, client, env.serverHost.ID(), record([]byte("after")))
			switch {
			case tt.failsOnce && (!errors.Is(err, dht.ErrUnreachable) || errors.Is(err, dht.ErrNotSent)):
				t.Fatalf("call after %s: err = %v, want ErrUnreachable without ErrNotSent", tt.name, err)
			case !tt.failsOnce && err != nil:
				t.Fatalf("call after %s: %v", tt.name, err)
			}
			if err := callEcho(t.Context(), t, client, env.serverHost.ID(), record([]byte("again"))); err != nil {
				t.Fatalf("second call after %s: %v", tt.name, err)
			}
			if got := opened(client, protoEcho); got != 2 {
				t.Fatalf("opened %v streams, want 2 (the first and its replacement)", got)
			}
			if got := counterValue(client.m.retries.WithLabelValues(string(protoEcho))); got != 0 {
				t.Fatalf("retries = %v, want 0", got)
			}
		})
	}
}

// TestNotSentOnlyWhenCertain: a call fails with ErrNotSent only when the
// peer's handler cannot have seen the request. A peer that takes the
// request and then vanishes (its links cut, as a crash would) leaves the
// outcome open, on a fresh stream and on a pooled one, even though the
// pooled stream's retry then fails to connect.
func TestNotSentOnlyWhenCertain(t *testing.T) {
	for _, pooled := range []bool{false, true} {
		t.Run(fmt.Sprintf("pooled=%v", pooled), func(t *testing.T) {
			mn, client, server := pair(t, testConfig(t), testConfig(t))
			if pooled {
				if err := callEcho(t.Context(), t, client, server.Self(), record(nil)); err != nil {
					t.Fatal(err)
				}
				if client.pool.size() != 1 {
					t.Fatalf("pool holds %d streams after a call, want 1", client.pool.size())
				}
			}
			var ran atomic.Int32
			server.Handle(protoOther, newRecord, func(context.Context, peer.ID, proto.Message) (proto.Message, error) {
				ran.Add(1)
				_ = mn.UnlinkPeers(client.Self(), server.Self())
				_ = mn.DisconnectPeers(client.Self(), server.Self())
				return nil, errors.New("gone before answering")
			})
			ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
			defer cancel()
			err := client.Call(ctx, server.Self(), protoOther, record(nil), &pb.Record{})
			if ran.Load() != 1 {
				t.Fatalf("handler ran %d times, want 1", ran.Load())
			}
			if !errors.Is(err, dht.ErrUnreachable) || errors.Is(err, dht.ErrNotSent) {
				t.Fatalf("err = %v, want ErrUnreachable without ErrNotSent", err)
			}
			// Now nothing connects: certainly not sent. (Mocknet closes
			// connections asynchronously and opens streams on closing ones.)
			waitFor(t, "connection closed", func() bool {
				return client.Host().Network().Connectedness(server.Self()) != network.Connected
			})
			err = client.Call(ctx, server.Self(), protoOther, record(nil), &pb.Record{})
			if !errors.Is(err, dht.ErrNotSent) || ran.Load() != 1 {
				t.Fatalf("call to an unlinked peer: err = %v (handler runs %d), want ErrNotSent", err, ran.Load())
			}
		})
	}
}

// TestNoResendAfterTaken: a pooled stream reset after the peer took the
// request (its handler ran) is not retried on a new stream, though the
// peer is still there: a peer that restarted in between would act on the
// request twice.
func TestNoResendAfterTaken(t *testing.T) {
	_, client, server := pair(t, testConfig(t), testConfig(t))
	var ran atomic.Int32
	server.Handle(protoOther, newRecord, func(context.Context, peer.ID, proto.Message) (proto.Message, error) {
		if ran.Add(1) == 2 { // the second request: cut its stream before answering
			server.mu.Lock()
			for s := range server.serving {
				_ = s.Reset()
			}
			server.mu.Unlock()
		}
		return &pb.Record{}, nil
	})
	if err := client.Call(t.Context(), server.Self(), protoOther, record(nil), &pb.Record{}); err != nil {
		t.Fatal(err)
	}
	if client.pool.size() != 1 {
		t.Fatalf("pool holds %d streams after a call, want 1", client.pool.size())
	}
	err := client.Call(t.Context(), server.Self(), protoOther, record(nil), &pb.Record{})
	if !errors.Is(err, dht.ErrUnreachable) || errors.Is(err, dht.ErrNotSent) {
		t.Fatalf("err = %v, want ErrUnreachable without ErrNotSent", err)
	}
	if got := ran.Load(); got != 2 {
		t.Fatalf("handler ran %d times for two calls: the taken request was sent again", got)
	}
}

type retryEnv struct {
	mn         mocknet.Mocknet
	client     *Transport
	server     *Transport
	serverHost host.Host
}

func TestPoolJanitorClosesIdleStreams(t *testing.T) {
	clientCfg := testConfig(t)
	clientCfg.PoolIdleTimeout = 20 * time.Millisecond
	_, client, server := pair(t, clientCfg, testConfig(t))
	if err := callEcho(t.Context(), t, client, server.Self(), record(nil)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "janitor to close the idle stream", func() bool { return client.pool.size() == 0 })
	waitFor(t, "server to see the close", func() bool { return serving(server) == 0 })
}

func TestSelfCall(t *testing.T) {
	_, hosts := testNet(t, 1)
	tr := newTransport(t, hosts[0], withRegistry(testConfig(t)))
	tr.Handle(protoEcho, newRecord, echo)
	tr.Handle(protoOther, newRecord, func(context.Context, peer.ID, proto.Message) (proto.Message, error) {
		return nil, errors.New("refused")
	})
	if err := callEcho(t.Context(), t, tr, tr.Self(), record([]byte("me"))); err != nil {
		t.Fatal(err)
	}
	var re *dht.RemoteError
	if err := tr.Call(t.Context(), tr.Self(), protoOther, record(nil), &pb.Record{}); !errors.As(err, &re) || re.Message != "refused" {
		t.Fatalf("err = %v, want remote 'refused'", err)
	}
	if err := tr.Call(t.Context(), tr.Self(), "/ringkv/none/1.0.0", record(nil), &pb.Record{}); !errors.Is(err, dht.ErrUnreachable) {
		t.Fatalf("err = %v, want ErrUnreachable", err)
	}
	if got := opened(tr, protoEcho); got != 0 {
		t.Fatalf("self call opened %v streams", got)
	}
}

func TestClose(t *testing.T) {
	_, client, server := pair(t, testConfig(t), testConfig(t))
	if err := callEcho(t.Context(), t, client, server.Self(), record(nil)); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if err := server.Close(); err != nil {
			t.Fatalf("Close #%d: %v", i+1, err)
		}
	}
	if slices.Contains(server.Host().Mux().Protocols(), protocol.ID(protoEcho)) {
		t.Fatal("stream handler still registered after Close")
	}
	if serving(server) != 0 {
		t.Fatal("server streams left after Close")
	}
	server.Handle(protoOther, newRecord, echo) // ignored after Close
	if slices.Contains(server.Host().Mux().Protocols(), protocol.ID(protoOther)) {
		t.Fatal("Handle after Close registered a handler")
	}
	err := client.Call(t.Context(), server.Self(), protoEcho, record(nil), &pb.Record{})
	if !errors.Is(err, dht.ErrUnreachable) {
		t.Fatalf("call to a closed transport: err = %v, want ErrUnreachable", err)
	}
	if err := client.Close(); err != nil {
		t.Fatal(err)
	}
	if err := client.Call(t.Context(), server.Self(), protoEcho, record(nil), &pb.Record{}); !errors.Is(err, dht.ErrClosed) {
		t.Fatalf("call after own Close: err = %v, want ErrClosed", err)
	}
}

func TestHandleReplaces(t *testing.T) {
	_, client, server := pair(t, testConfig(t), testConfig(t))
	if err := callEcho(t.Context(), t, client, server.Self(), record([]byte("v1"))); err != nil {
		t.Fatal(err)
	}
	server.Handle(protoEcho, newRecord, func(context.Context, peer.ID, proto.Message) (proto.Message, error) {
		return record([]byte("v2")), nil
	})
	var got pb.Record // over the pooled stream opened under the first handler
	if err := client.Call(t.Context(), server.Self(), protoEcho, record(nil), &got); err != nil {
		t.Fatal(err)
	}
	if v := string(got.GetVersions()[0].GetValue()); v != "v2" {
		t.Fatalf("answer %q from the replaced handler", v)
	}
}

func TestAddAddrs(t *testing.T) {
	_, hosts := testNet(t, 2)
	tr := newTransport(t, hosts[0], testConfig(t))
	target, other := hosts[1].ID(), hosts[0].ID()
	tests := []struct {
		name string
		in   []string
		want []string
	}{
		{"plain", []string{"/ip4/10.0.0.1/tcp/4001"}, []string{"/ip4/10.0.0.1/tcp/4001"}},
		{"own p2p suffix", []string{"/ip4/10.0.0.2/udp/4001/quic-v1/p2p/" + target.String()}, []string{"/ip4/10.0.0.2/udp/4001/quic-v1"}},
		{"other peer's suffix", []string{"/ip4/10.0.0.3/tcp/4001/p2p/" + other.String()}, nil},
		{"garbage", []string{"not a multiaddr", "/ip4/999.0.0.1/tcp/1"}, nil},
		{"mixed", []string{"junk", "/dns4/node.example/tcp/4001"}, []string{"/dns4/node.example/tcp/4001"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr.AddAddrs(target, tt.in)
			var have []string
			for _, a := range tr.Host().Peerstore().Addrs(target) {
				have = append(have, a.String())
			}
			for _, w := range tt.want {
				if !slices.Contains(have, w) {
					t.Fatalf("peerstore lacks %s: %v", w, have)
				}
			}
			for _, h := range have {
				if strings.Contains(h, "/p2p/") || strings.HasPrefix(h, "/ip4/10.0.0.3") {
					t.Fatalf("peerstore holds %s", h)
				}
			}
		})
	}
}

func TestLocalAddrs(t *testing.T) {
	_, hosts := testNet(t, 1)
	tr := newTransport(t, hosts[0], testConfig(t))
	got := tr.LocalAddrs()
	if len(got) == 0 || len(got) != len(hosts[0].Addrs()) {
		t.Fatalf("LocalAddrs = %v, host has %v", got, hosts[0].Addrs())
	}
	for i, a := range hosts[0].Addrs() {
		if got[i] != a.String() {
			t.Fatalf("LocalAddrs[%d] = %s, want %s", i, got[i], a)
		}
	}
}

func TestMalformedResponses(t *testing.T) {
	okRecord, _ := proto.Marshal(record([]byte("x")))
	okResponse := append([]byte{statusOK}, frame(uint64(len(okRecord)), okRecord)...)
	tests := []struct {
		name       string
		answer     []byte // written by a raw server after reading the request
		wantErr    error  // nil: the call succeeds
		wantPooled bool
	}{
		{"well formed", okResponse, nil, true},
		{"unknown status", []byte{7, 0}, ErrBadResponse, false},
		{"payload not a record", append([]byte{statusOK}, frame(2, []byte{0xff, 0xff})...), ErrBadResponse, false},
		{"error message over 1 KiB", append([]byte{statusError}, frame(2000, nil)...), ErrBadResponse, false},
		{"truncated", append([]byte{statusOK}, frame(50, []byte("abc"))...), dht.ErrUnreachable, false},
		{"two answers to one request", append(slices.Clone(okResponse), okResponse...), nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, hosts := testNet(t, 2)
			client := newTransport(t, hosts[0], testConfig(t))
			hosts[1].SetStreamHandler(protocol.ID(protoEcho), func(s network.Stream) {
				defer s.Close()
				r := getReader(s)
				defer putReader(r)
				if _, err := readFrame(r, 1<<20, nil); err != nil {
					_ = s.Reset()
					return
				}
				_, _ = s.Write(tt.answer)
				_ = s.CloseWrite()
			})
			err := client.Call(t.Context(), hosts[1].ID(), protoEcho, record(nil), &pb.Record{})
			if !errors.Is(err, tt.wantErr) { // errors.Is(err, nil) is err == nil
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if errors.Is(err, ErrBadResponse) && !errors.Is(err, dht.ErrUnreachable) {
				t.Fatalf("bad response not ErrUnreachable: %v", err)
			}
			// A failed stream is never pooled. A duplicate answer is caught
			// only if it arrived with the first, so that case checks nothing.
			pooled := client.pool.size() == 1
			switch {
			case tt.wantPooled && !pooled:
				t.Fatal("well-formed exchange not pooled")
			case tt.wantErr != nil && pooled:
				t.Fatal("failed stream pooled")
			}
		})
	}
}
