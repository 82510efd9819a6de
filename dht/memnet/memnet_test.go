package memnet

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/ringkv/ringkv/dht"
)

const echo dht.Protocol = "/ringkv/echo/1.0.0"

func newStr() proto.Message { return new(wrapperspb.StringValue) }

// echoHandler answers "<from>:<value>"; "panic" panics, "fail" errors and
// "big" answers a large message.
func echoHandler(_ context.Context, from peer.ID, req proto.Message) (proto.Message, error) {
	v := req.(*wrapperspb.StringValue).GetValue()
	switch v {
	case "panic":
		panic("boom")
	case "fail":
		return nil, errors.New("refused")
	case "big":
		return wrapperspb.String(strings.Repeat("x", 1<<12)), nil
	}
	return wrapperspb.String(string(from) + ":" + v), nil
}

func ids(n int) []peer.ID {
	out := make([]peer.ID, n)
	for i := range out {
		out[i] = peer.ID(fmt.Sprintf("peer-%02d", i))
	}
	return out
}

func newNet(t *testing.T, opts Options, n int) (*Network, []peer.ID) {
	t.Helper()
	net := New(opts)
	ps := ids(n)
	for _, id := range ps {
		net.Endpoint(id).Handle(echo, newStr, echoHandler)
	}
	return net, ps
}

func call(net *Network, from, to peer.ID, v string) (string, error) {
	var resp wrapperspb.StringValue
	err := net.Endpoint(from).Call(context.Background(), to, echo, wrapperspb.String(v), &resp)
	return resp.GetValue(), err
}

type callCase struct {
	name    string
	to      peer.ID
	req     string
	want    string
	wantErr error
	remote  bool
}

func TestCall(t *testing.T) {
	for _, clone := range []bool{true, false} {
		opts := Options{Clone: clone, MaxMessageSize: 1024}
		net, p := newNet(t, opts, 3)
		tests := []callCase{
			{name: "ok", to: p[1], req: "hi", want: string(p[0]) + ":hi"},
			{name: "self", to: p[0], req: "me", want: string(p[0]) + ":me"},
			{name: "unknown peer", to: "nobody", req: "hi", wantErr: dht.ErrUnreachable},
			{name: "handler error", to: p[1], req: "fail", remote: true},
			{name: "handler panic", to: p[1], req: "panic", remote: true},
		}
		if clone {
			tests = append(tests,
				callCase{name: "answer too large", to: p[1], req: "big", wantErr: dht.ErrMessageTooLarge},
				callCase{name: "request too large", to: p[1], req: strings.Repeat("y", 2048), wantErr: dht.ErrMessageTooLarge},
			)
		}
		for _, tc := range tests {
			t.Run(fmt.Sprintf("clone=%v/%s", clone, tc.name), func(t *testing.T) {
				got, err := call(net, p[0], tc.to, tc.req)
				var re *dht.RemoteError
				switch {
				case tc.remote:
					if !errors.As(err, &re) {
						t.Fatalf("err = %v, want *dht.RemoteError", err)
					}
				case tc.wantErr != nil:
					if !errors.Is(err, tc.wantErr) {
						t.Fatalf("err = %v, want %v", err, tc.wantErr)
					}
				default:
					if err != nil || got != tc.want {
						t.Fatalf("got %q, %v; want %q", got, err, tc.want)
					}
				}
			})
		}
	}
}

func TestCallNoHandlerAndCancelled(t *testing.T) {
	net, p := newNet(t, DefaultOptions(), 2)
	var resp wrapperspb.StringValue
	err := net.Endpoint(p[0]).Call(context.Background(), p[1], "/other/1", wrapperspb.String("x"), &resp)
	if !errors.Is(err, dht.ErrUnreachable) || !errors.Is(err, dht.ErrNotSent) {
		t.Fatalf("no handler: err = %v, want unreachable, not sent", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err = net.Endpoint(p[0]).Call(ctx, p[1], echo, wrapperspb.String("x"), &resp)
	if !errors.Is(err, dht.ErrUnreachable) || !errors.Is(err, dht.ErrNotSent) {
		t.Fatalf("cancelled: err = %v, want unreachable, not sent", err)
	}
}

func TestAnswerAfterDeadline(t *testing.T) {
	net := New(DefaultOptions())
	ctx, cancel := context.WithCancel(context.Background())
	net.Endpoint("b").Handle(echo, newStr, func(context.Context, peer.ID, proto.Message) (proto.Message, error) {
		cancel() // the deadline passes while the handler runs
		return wrapperspb.String("late"), nil
	})
	var resp wrapperspb.StringValue
	err := net.Endpoint("a").Call(ctx, "b", echo, wrapperspb.String("x"), &resp)
	if !errors.Is(err, dht.ErrUnreachable) || errors.Is(err, dht.ErrNotSent) {
		t.Fatalf("err = %v, want unreachable and not ErrNotSent: the handler ran", err)
	}
}

func TestFaults(t *testing.T) {
	type step struct {
		do   func(n *Network, p []peer.ID)
		from int
		to   int
		ok   bool
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"kill target", []step{
			{func(n *Network, p []peer.ID) { n.Kill(p[1]) }, 0, 1, false},
			{func(n *Network, p []peer.ID) { n.Revive(p[1]) }, 0, 1, true},
		}},
		{"killed caller cannot call", []step{
			{func(n *Network, p []peer.ID) { n.Kill(p[0]) }, 0, 1, false},
		}},
		{"partition listed groups", []step{
			{func(n *Network, p []peer.ID) { n.Partition(p[:2], p[2:]) }, 0, 1, true},
			{nil, 0, 2, false},
			{nil, 3, 2, true},
			{func(n *Network, _ []peer.ID) { n.Heal() }, 0, 2, true},
		}},
		{"unlisted nodes form one group", []step{
			{func(n *Network, p []peer.ID) { n.Partition(p[:1]) }, 0, 1, false},
			{nil, 1, 2, true},
			{nil, 3, 0, false},
		}},
		{"block one direction", []step{
			{func(n *Network, p []peer.ID) { n.Block(p[0], p[1]) }, 0, 1, false},
			{nil, 1, 0, false}, // request arrives, answer is lost
			{nil, 1, 2, true},
			{func(n *Network, p []peer.ID) { n.Unblock(p[0], p[1]) }, 0, 1, true},
			{nil, 1, 0, true},
		}},
		{"heal clears blocks", []step{
			{func(n *Network, p []peer.ID) { n.Block(p[2], p[3]) }, 2, 3, false},
			{func(n *Network, _ []peer.ID) { n.Heal() }, 2, 3, true},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			net, p := newNet(t, DefaultOptions(), 4)
			for i, s := range tc.steps {
				if s.do != nil {
					s.do(net, p)
				}
				_, err := call(net, p[s.from], p[s.to], "x")
				if (err == nil) != s.ok {
					t.Fatalf("step %d: %d->%d err = %v, want ok=%v", i, s.from, s.to, err, s.ok)
				}
				if err != nil && !errors.Is(err, dht.ErrUnreachable) {
					t.Fatalf("step %d: err = %v, want unreachable", i, err)
				}
			}
		})
	}
}

func TestStatsAndAddrs(t *testing.T) {
	net, p := newNet(t, DefaultOptions(), 2)
	if _, err := call(net, p[0], p[1], "a"); err != nil {
		t.Fatal(err)
	}
	if _, err := call(net, p[0], "nobody", "a"); err == nil {
		t.Fatal("call to unknown peer succeeded")
	}
	calls, failures := net.Stats()
	if calls != 2 || failures != 1 {
		t.Fatalf("Stats = %d, %d; want 2, 1", calls, failures)
	}
	if got := net.ProtocolCalls(echo); got != 2 {
		t.Fatalf("ProtocolCalls = %d, want 2", got)
	}
	if got := net.CallsByProtocol()[echo]; got != 2 {
		t.Fatalf("CallsByProtocol = %d, want 2", got)
	}
	ep := net.Endpoint(p[0])
	if ep != net.Endpoint(p[0]) {
		t.Fatal("Endpoint does not return the same endpoint")
	}
	ep.AddAddrs(p[1], []string{"/ip4/1.2.3.4/tcp/1"})
	if got := ep.Addrs(p[1]); len(got) != 1 || got[0] != "/ip4/1.2.3.4/tcp/1" {
		t.Fatalf("Addrs = %v", got)
	}
	if got := ep.LocalAddrs(); len(got) != 1 || got[0] != "/memnet/"+p[0].String() {
		t.Fatalf("LocalAddrs = %v", got)
	}
	if !net.Alive(p[0]) || net.Alive("nobody") {
		t.Fatal("Alive is wrong")
	}
	if got := len(net.Peers()); got != 2 {
		t.Fatalf("Peers = %d, want 2", got)
	}
}

func TestConcurrentCallsAndFaults(t *testing.T) {
	net, p := newNet(t, DefaultOptions(), 8)
	var wg sync.WaitGroup
	for i := range p {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for j := 0; j < 200; j++ {
				_, _ = call(net, p[i], p[(i+j)%len(p)], "x")
			}
		}(i)
	}
	for j := 0; j < 50; j++ {
		net.Partition(p[:j%4])
		net.Kill(p[j%8])
		net.Revive(p[j%8])
		net.Block(p[1], p[2])
		net.Heal()
	}
	wg.Wait()
	calls, _ := net.Stats()
	if calls != uint64(len(p)*200) {
		t.Fatalf("calls = %d, want %d", calls, len(p)*200)
	}
}

func BenchmarkCall(b *testing.B) {
	for _, clone := range []bool{true, false} {
		b.Run(fmt.Sprintf("clone=%v", clone), func(b *testing.B) {
			net := New(Options{Clone: clone})
			net.Endpoint("b").Handle(echo, newStr, echoHandler)
			a := net.Endpoint("a")
			req := wrapperspb.String("hello")
			ctx := context.Background()
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				var resp wrapperspb.StringValue
				for pb.Next() {
					if err := a.Call(ctx, "b", echo, req, &resp); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}
