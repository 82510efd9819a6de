package p2p

import (
	"errors"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/prometheus/client_golang/prometheus"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*Config)
		ok     bool
	}{
		{"default", func(*Config) {}, true},
		{"no reuse", func(c *Config) { c.MaxIdleStreams = 0 }, true},
		{"nil logger", func(c *Config) { c.Logger = nil }, true},
		{"message size too small", func(c *Config) { c.MaxMessageSize = 100 }, false},
		{"message size too large", func(c *Config) { c.MaxMessageSize = 2 << 30 }, false},
		{"zero dial timeout", func(c *Config) { c.DialTimeout = 0 }, false},
		{"negative call timeout", func(c *Config) { c.CallTimeout = -time.Second }, false},
		{"zero idle timeout", func(c *Config) { c.IdleTimeout = 0 }, false},
		{"zero pool idle timeout", func(c *Config) { c.PoolIdleTimeout = 0 }, false},
		{"pool idle equals idle", func(c *Config) { c.PoolIdleTimeout = c.IdleTimeout }, false},
		{"pool idle above idle", func(c *Config) { c.PoolIdleTimeout = 2 * c.IdleTimeout }, false},
		{"negative max idle", func(c *Config) { c.MaxIdleStreams = -1 }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			tt.modify(&cfg)
			err := cfg.Validate()
			if tt.ok != (err == nil) || (err != nil && !errors.Is(err, ErrInvalidConfig)) {
				t.Fatalf("Validate = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

func TestNewRejects(t *testing.T) {
	_, hosts := testNet(t, 1)
	if _, err := New(nil, DefaultConfig()); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("nil host: err = %v", err)
	}
	bad := DefaultConfig()
	bad.CallTimeout = 0
	if _, err := New(hosts[0], bad); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("bad config: err = %v", err)
	}
}

func TestMetricsRegistration(t *testing.T) {
	conflicting := prometheus.NewRegistry()
	conflicting.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{
		Name: "ringkv_p2p_calls_total", Help: "same name, other labels",
	}))
	tests := []struct {
		name    string
		reg     prometheus.Registerer
		n       int // transports on the registry
		wantErr bool
	}{
		{"nil registry", nil, 3, false},
		{"shared registry", prometheus.NewRegistry(), 3, false},
		{"wrapped per transport", prometheus.WrapRegistererWith(prometheus.Labels{"node": "a"}, prometheus.NewRegistry()), 2, false},
		{"conflicting collector", conflicting, 1, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, hosts := testNet(t, tt.n)
			for _, h := range hosts {
				cfg := testConfig(t)
				cfg.Registerer = tt.reg
				tr, err := New(h, cfg)
				if (err != nil) != tt.wantErr {
					t.Fatalf("New: err = %v, wantErr %v", err, tt.wantErr)
				}
				if err == nil {
					_ = tr.Close()
				}
			}
		})
	}
}

// fakeStream is a network.Stream that records Close and Reset; the pool
// calls nothing else.
type fakeStream struct {
	network.Stream
	conn          network.Conn
	closed, reset bool
}

func (f *fakeStream) Close() error       { f.closed = true; return nil }
func (f *fakeStream) Reset() error       { f.reset = true; return nil }
func (f *fakeStream) Conn() network.Conn { return f.conn }

type fakeConn struct {
	network.Conn
	name   string
	closed bool
}

func (f *fakeConn) IsClosed() bool { return f.closed }

func fakeClientStream(c network.Conn) (*clientStream, *fakeStream) {
	fs := &fakeStream{conn: c}
	return &clientStream{s: fs}, fs
}

func TestStreamPool(t *testing.T) {
	c1, c2 := &fakeConn{name: "c1"}, &fakeConn{name: "c2"}
	k1, k2 := poolKey{peer: "a", proto: protoEcho}, poolKey{peer: "b", proto: protoEcho}
	t0 := time.Unix(1000, 0)
	const idle = 10 * time.Second

	t.Run("lifo and cap", func(t *testing.T) {
		p := newStreamPool(2, idle)
		a, _ := fakeClientStream(c1)
		b, _ := fakeClientStream(c1)
		c, _ := fakeClientStream(c1)
		if !p.put(k1, a, t0) || !p.put(k1, b, t0) || p.put(k1, c, t0) {
			t.Fatal("cap of 2 not enforced")
		}
		if p.get(k1, t0) != b || p.get(k1, t0) != a || p.get(k1, t0) != nil {
			t.Fatal("not LIFO")
		}
		if p.get(k2, t0) != nil {
			t.Fatal("stream of another key")
		}
	})
	t.Run("disabled", func(t *testing.T) {
		p := newStreamPool(0, idle)
		a, _ := fakeClientStream(c1)
		if p.put(k1, a, t0) {
			t.Fatal("pooled with MaxIdleStreams 0")
		}
	})
	t.Run("stale on get", func(t *testing.T) {
		p := newStreamPool(4, idle)
		a, fa := fakeClientStream(c1)
		b, fb := fakeClientStream(c1)
		p.put(k1, a, t0)
		p.put(k1, b, t0.Add(time.Second))
		if p.get(k1, t0.Add(time.Second+idle+1)) != nil {
			t.Fatal("stale stream reused")
		}
		if !fa.closed || !fb.closed || p.size() != 0 {
			t.Fatal("stale streams not closed")
		}
	})
	t.Run("sweep", func(t *testing.T) {
		p := newStreamPool(4, idle)
		old, fold := fakeClientStream(c1)
		fresh, ffresh := fakeClientStream(c1)
		other, fother := fakeClientStream(c2)
		p.put(k1, old, t0)
		p.put(k1, fresh, t0.Add(idle))
		p.put(k2, other, t0)
		p.sweep(t0.Add(idle + time.Second))
		if !fold.closed || !fother.closed || ffresh.closed {
			t.Fatalf("closed old=%v other=%v fresh=%v", fold.closed, fother.closed, ffresh.closed)
		}
		if p.size() != 1 || p.get(k1, t0.Add(idle+time.Second)) != fresh {
			t.Fatal("fresh stream lost")
		}
	})
	t.Run("closed conn skipped on get", func(t *testing.T) {
		dead := &fakeConn{name: "dead", closed: true}
		p := newStreamPool(4, idle)
		live, flive := fakeClientStream(c1)
		gone1, fg1 := fakeClientStream(dead)
		gone2, fg2 := fakeClientStream(dead)
		p.put(k1, live, t0)
		p.put(k1, gone1, t0)
		p.put(k1, gone2, t0)
		if p.get(k1, t0) != live {
			t.Fatal("get did not skip the streams of a closed connection")
		}
		if !fg1.reset || !fg2.reset || flive.reset || p.size() != 0 {
			t.Fatalf("reset gone1=%v gone2=%v live=%v, size=%d", fg1.reset, fg2.reset, flive.reset, p.size())
		}
		p.put(k1, gone1, t0)
		if p.get(k1, t0) != nil || p.size() != 0 {
			t.Fatal("get returned or kept a stream of a closed connection")
		}
	})
	t.Run("drop conn", func(t *testing.T) {
		p := newStreamPool(4, idle)
		a, fa := fakeClientStream(c1)
		b, fb := fakeClientStream(c2)
		c, fc := fakeClientStream(c1)
		p.put(k1, a, t0)
		p.put(k1, b, t0)
		p.put(k2, c, t0)
		p.dropConn(c1)
		if !fa.reset || !fc.reset || fb.reset || p.size() != 1 {
			t.Fatalf("reset a=%v b=%v c=%v size=%d", fa.reset, fb.reset, fc.reset, p.size())
		}
	})
	t.Run("close all", func(t *testing.T) {
		p := newStreamPool(4, idle)
		a, fa := fakeClientStream(c1)
		p.put(k1, a, t0)
		p.closeAll()
		b, _ := fakeClientStream(c1)
		if !fa.closed || p.put(k1, b, t0) || p.size() != 0 {
			t.Fatal("closeAll left streams or accepts new ones")
		}
	})
}
