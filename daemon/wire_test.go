package daemon

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ringkv/ringkv/daemon/client"
)

// wireDaemon starts a one-node daemon with small limits and returns it
// with its API address; it stops with the test.
func wireDaemon(t *testing.T) (*Daemon, string) {
	t.Helper()
	cfg := lastUpConfig(t)
	cfg.MaxKeySize, cfg.MaxValueSize = 64, 1024
	d, err := New(cfg, WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Shutdown(context.Background()) })
	return d, d.APIAddr()
}

// wireClient is a client of addr's wire protocol, closed with the test.
func wireClient(t *testing.T, addr string, conns int) *client.Wire {
	t.Helper()
	w, err := client.NewWire(addr, conns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Close)
	return w
}

func TestWireKV(t *testing.T) {
	_, addr := wireDaemon(t)
	w := wireClient(t, addr, 2)
	ctx := context.Background()

	if err := w.Ping(ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	if _, err := w.Get(ctx, []byte("k"), client.ReadOptions{}); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("Get of a missing key: %v; want ErrNotFound", err)
	}
	res, err := w.Put(ctx, []byte("k"), []byte("v1"), client.WriteOptions{})
	if err != nil || res.Context == "" || res.Acks != 1 || res.Coordinator == "" {
		t.Fatalf("Put = %+v, %v; want a context, one ack and the coordinator", res, err)
	}
	// A second write without the context is concurrent with the first.
	if _, err := w.Put(ctx, []byte("k"), []byte("v2"), client.WriteOptions{W: 1}); err != nil {
		t.Fatal(err)
	}
	got, err := w.Get(ctx, []byte("k"), client.ReadOptions{Consistency: "one"})
	if err != nil || len(got.Siblings) != 2 || got.Answered != 1 {
		t.Fatalf("Get after two blind puts = %+v, %v; want 2 siblings from 1 replica", got, err)
	}
	if _, err := w.GetValue(ctx, []byte("k"), client.ReadOptions{}); !errors.Is(err, client.ErrSiblings) {
		t.Fatalf("GetValue of a key with siblings: %v; want ErrSiblings", err)
	}
	// A write with the read's context replaces both.
	if _, err := w.Put(ctx, []byte("k"), []byte("v3"), client.WriteOptions{Context: got.Context, TTL: time.Hour}); err != nil {
		t.Fatal(err)
	}
	got, err = w.Get(ctx, []byte("k"), client.ReadOptions{R: 1})
	if err != nil || len(got.Siblings) != 1 || string(got.Siblings[0].Value) != "v3" || got.Siblings[0].ExpiresAt == 0 || got.Siblings[0].Timestamp == 0 {
		t.Fatalf("Get after a put with the context = %+v, %v; want v3 alone, with its time and expiry", got, err)
	}
	// An empty value is a value.
	if _, err := w.Put(ctx, []byte("empty"), nil, client.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	if v, err := w.GetValue(ctx, []byte("empty"), client.ReadOptions{}); err != nil || v == nil || len(v) != 0 {
		t.Fatalf("GetValue of an empty value = %q (nil %v), %v", v, v == nil, err)
	}
	if _, err := w.Delete(ctx, []byte("k"), client.WriteOptions{Context: got.Context}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Get(ctx, []byte("k"), client.ReadOptions{}); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("Get after Delete: %v; want ErrNotFound", err)
	}
}

// TestWireConcurrent sends many requests at once over two connections:
// each answer reaches its own caller.
func TestWireConcurrent(t *testing.T) {
	_, addr := wireDaemon(t)
	w := wireClient(t, addr, 2)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20 {
				key := []byte{'k', byte('a' + g), byte('a' + i)}
				if _, err := w.Put(ctx, key, key, client.WriteOptions{}); err != nil {
					errs <- err
					return
				}
				v, err := w.GetValue(ctx, key, client.ReadOptions{})
				if err == nil && string(v) != string(key) {
					err = errors.New("key " + string(key) + " read back " + string(v))
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestWireBadRequests: each bad request gets the HTTP API's status and a
// one-line message, and changes nothing.
func TestWireBadRequests(t *testing.T) {
	_, addr := wireDaemon(t)
	w := wireClient(t, addr, 1)
	ctx := context.Background()
	long := strings.Repeat("k", 65)
	cases := []struct {
		name   string
		do     func() error
		status int
		msg    string
	}{
		{"empty key", func() error { _, err := w.Put(ctx, nil, []byte("v"), client.WriteOptions{}); return err }, 400, "empty key"},
		{"long key", func() error { _, err := w.Put(ctx, []byte(long), []byte("v"), client.WriteOptions{}); return err }, 400, "max_key_size"},
		{"big value", func() error {
			_, err := w.Put(ctx, []byte("k"), make([]byte, 1025), client.WriteOptions{})
			return err
		}, 413, "max_value_size"},
		{"w over N", func() error { _, err := w.Put(ctx, []byte("k"), []byte("v"), client.WriteOptions{W: 2}); return err }, 400, "from 1 to 1"},
		{"w and consistency", func() error {
			_, err := w.Put(ctx, []byte("k"), []byte("v"), client.WriteOptions{W: 1, Consistency: "one"})
			return err
		}, 400, "either w or consistency"},
		{"bad level", func() error { _, err := w.Get(ctx, []byte("k"), client.ReadOptions{Consistency: "most"}); return err }, 400, "not one, quorum or all"},
		{"ttl too long", func() error {
			_, err := w.Put(ctx, []byte("k"), []byte("v"), client.WriteOptions{TTL: 101 * 365 * 24 * time.Hour})
			return err
		}, 400, "over 100 years"},
		{"bad context", func() error {
			_, err := w.Put(ctx, []byte("k"), []byte("v"), client.WriteOptions{Context: "not a context"})
			return err
		}, 400, "context"},
	}
	for _, c := range cases {
		err := c.do()
		var ae *client.APIError
		if !errors.As(err, &ae) || ae.Status != c.status || !strings.Contains(ae.Message, c.msg) || strings.Contains(ae.Message, "\n") {
			t.Errorf("%s: %v; want status %d and one line with %q", c.name, err, c.status, c.msg)
		}
	}
	if _, err := w.Get(ctx, []byte("k"), client.ReadOptions{}); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("after the bad requests, k: %v; want ErrNotFound", err)
	}
}

// rawWire opens a wire-protocol connection without the client.
func rawWire(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := io.WriteString(c, client.WireMagic); err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c
}

// TestWireBadFrames: a frame the daemon cannot read is answered with ID
// 0 and the connection closed; the daemon serves on.
func TestWireBadFrames(t *testing.T) {
	_, addr := wireDaemon(t)
	frame := func(body []byte) []byte {
		return append(binary.BigEndian.AppendUint32(nil, uint32(len(body))), body...)
	}
	cases := []struct {
		name   string
		send   []byte
		status int
		msg    string
	}{
		{"garbage", frame([]byte{0xff, 0xff, 0xff}), 400, "malformed request frame"},
		{"key as a number", frame([]byte{0x08, 0x01, 0x18, 0x05}), 400, "wire type"},
		{"no ID", frame(client.AppendWireRequest(nil, &client.WireRequest{Op: client.WireGet, Key: []byte("k")})[4:]), 400, "without an ID"},
		{"too large", binary.BigEndian.AppendUint32(nil, 1<<30), 413, "over the"},
	}
	for _, c := range cases {
		conn := rawWire(t, addr)
		if _, err := conn.Write(c.send); err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(conn)
		body, err := client.ReadWireFrame(br, nil, 1<<20)
		if err != nil {
			t.Fatalf("%s: reading the answer: %v", c.name, err)
		}
		resp, err := client.DecodeWireResponse(body)
		if err != nil || resp.ID != 0 || resp.Status != c.status || !strings.Contains(resp.Error, c.msg) {
			t.Errorf("%s: answer %+v, %v; want ID 0, status %d, %q", c.name, resp, err, c.status, c.msg)
		}
		if _, err := br.ReadByte(); err != io.EOF {
			t.Errorf("%s: after the answer: %v; want the connection closed", c.name, err)
		}
	}
	// An unknown operation is refused alone; the connection serves on.
	conn := rawWire(t, addr)
	conn.Write(client.AppendWireRequest(nil, &client.WireRequest{ID: 7, Op: 9, Key: []byte("k")}))
	conn.Write(client.AppendWireRequest(nil, &client.WireRequest{ID: 8, Op: client.WireGet, Key: []byte("k")}))
	br := bufio.NewReader(conn)
	seen := map[uint64]client.WireResponse{}
	for range 2 {
		body, err := client.ReadWireFrame(br, nil, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		resp, _ := client.DecodeWireResponse(body)
		seen[resp.ID] = resp
	}
	if r := seen[7]; r.Status != 400 || !strings.Contains(r.Error, "unknown operation 9") {
		t.Errorf("unknown operation: %+v; want 400", r)
	}
	if r := seen[8]; r.Status != 404 {
		t.Errorf("the get after it: %+v; want 404", r)
	}
}

// TestWireSlowFrame: a frame begun and not finished within the time an
// HTTP request has ends its connection; an idle connection stays open.
func TestWireSlowFrame(t *testing.T) {
	defer func(d time.Duration) { wireFrameTimeout = d }(wireFrameTimeout)
	wireFrameTimeout = 200 * time.Millisecond
	_, addr := wireDaemon(t)
	idle := rawWire(t, addr)
	slow := rawWire(t, addr)
	frame := client.AppendWireRequest(nil, &client.WireRequest{ID: 1, Op: client.WireGet, Key: []byte("k")})
	if _, err := slow.Write(frame[:len(frame)-1]); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(slow); err != nil { // ends when the daemon closes it
		t.Fatalf("the connection with a frame cut short: %v; want it closed", err)
	}
	if _, err := idle.Write(frame); err != nil {
		t.Fatal(err)
	}
	body, err := client.ReadWireFrame(bufio.NewReader(idle), nil, 1<<20)
	if err != nil {
		t.Fatalf("the idle connection: %v; want it served", err)
	}
	if r, _ := client.DecodeWireResponse(body); r.ID != 1 || r.Status != 404 {
		t.Fatalf("the idle connection's answer: %+v; want 404 for request 1", r)
	}
}

// TestWireSharesTheAPIAddress: HTTP requests reach the HTTP server on the
// same address, even when their first bytes arrive one by one.
func TestWireSharesTheAPIAddress(t *testing.T) {
	_, addr := wireDaemon(t)
	resp, err := http.Get("http://" + addr + "/livez")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /livez: %v, %v", resp, err)
	}
	resp.Body.Close()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	for _, part := range []string{"G", "ET", " /livez HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"} {
		if _, err := io.WriteString(c, part); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond) // lets each part arrive alone
	}
	b, err := io.ReadAll(c)
	if err != nil || !strings.HasPrefix(string(b), "HTTP/1.1 200") {
		t.Fatalf("health check sent in pieces: %q, %v", b, err)
	}
}

// TestWireShutdown: a connection open when the daemon stops is closed,
// and the client reports the daemon unreachable.
func TestWireShutdown(t *testing.T) {
	d, addr := wireDaemon(t)
	w := wireClient(t, addr, 1)
	ctx := context.Background()
	if _, err := w.Put(ctx, []byte("k"), []byte("v"), client.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := d.Shutdown(sctx); err != nil {
		t.Fatal(err)
	}
	if sctx.Err() != nil {
		t.Fatal("Shutdown waited for its deadline: the wire connection held it")
	}
	if _, err := w.Get(ctx, []byte("k"), client.ReadOptions{}); !errors.Is(err, client.ErrUnreachable) {
		t.Fatalf("Get after Shutdown: %v; want ErrUnreachable", err)
	}
}
