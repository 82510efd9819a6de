package client_test

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/ringkv/ringkv/daemon/client"
)

func TestWireFramesRoundTrip(t *testing.T) {
	reqs := []client.WireRequest{
		{ID: 1, Op: client.WireGet, Key: []byte("k"), Quorum: 2},
		{ID: 1<<64 - 1, Op: client.WirePut, Key: []byte{0, 0xff}, Value: []byte{}, Consistency: "all", TTL: time.Hour, Context: "ctx"},
		{ID: 3, Op: client.WirePut, Key: []byte("k"), Value: bytes.Repeat([]byte("v"), 70000)},
		{ID: 4, Op: client.WireDelete, Key: []byte("k"), Context: "c"},
	}
	var stream []byte
	for i := range reqs {
		stream = client.AppendWireRequest(stream, &reqs[i])
	}
	r := bytes.NewReader(stream)
	for _, want := range reqs {
		body, err := client.ReadWireFrame(r, nil, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		got, err := client.DecodeWireRequest(body)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("request round trip:\n got %+v, %v\nwant %+v", got, err, want)
		}
	}
	resps := []client.WireResponse{
		{ID: 9, Status: 200, Context: "c", Acks: 2, Hinted: 1, Coordinator: "12D3"},
		{ID: 10, Status: 200, Answered: 2, Siblings: []client.WireSibling{
			{Value: []byte("a"), Timestamp: 1, ExpiresAt: 2}, {Value: []byte{}, Timestamp: -5}}},
		{ID: 11, Status: 503, Error: "only 1 replica(s) acknowledged the write, W=2 required"},
	}
	for _, want := range resps {
		b := client.AppendWireResponse(nil, &want)
		got, err := client.DecodeWireResponse(b[4:])
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("response round trip:\n got %+v, %v\nwant %+v", got, err, want)
		}
	}
}

func TestReadWireFrame(t *testing.T) {
	big := binary.BigEndian.AppendUint32(nil, 101)
	if _, err := client.ReadWireFrame(bytes.NewReader(big), nil, 100); !errors.Is(err, client.ErrFrameTooLarge) {
		t.Fatalf("frame over the limit: %v; want ErrFrameTooLarge", err)
	}
	short := append(binary.BigEndian.AppendUint32(nil, 10), "abc"...)
	if _, err := client.ReadWireFrame(bytes.NewReader(short), nil, 100); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("frame cut short: %v; want ErrUnexpectedEOF", err)
	}
	if _, err := client.ReadWireFrame(bytes.NewReader(nil), nil, 100); err != io.EOF {
		t.Fatalf("no frame: %v; want EOF", err)
	}
}

func TestDecodeWireMalformed(t *testing.T) {
	cases := map[string][]byte{
		"truncated varint":  {0x08, 0xff},
		"truncated bytes":   {0x1a, 0x05, 'a'},
		"key as a varint":   {0x18, 0x01},
		"id as bytes":       {0x0a, 0x01, 'a'},
		"field number zero": {0x00, 0x01},
		"ttl out of range":  {0x38, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
	}
	for name, b := range cases {
		if r, err := client.DecodeWireRequest(b); err == nil {
			t.Errorf("%s: decoded %+v; want an error", name, r)
		}
	}
	// Unknown fields, of any type, are skipped.
	b := client.AppendWireRequest(nil, &client.WireRequest{ID: 5, Op: client.WireGet, Key: []byte("k")})[4:]
	b = append(b, 0x78, 0x01, 0x82, 0x01, 0x02, 'x', 'y') // field 15 varint, field 16 bytes
	if r, err := client.DecodeWireRequest(b); err != nil || r.ID != 5 || string(r.Key) != "k" {
		t.Fatalf("with unknown fields: %+v, %v", r, err)
	}
	if r, err := client.DecodeWireResponse([]byte{0x4a, 0x02, 0x08, 0x01}); err == nil {
		t.Errorf("sibling value as a varint: decoded %+v; want an error", r)
	}
}

// TestWireWriterConcurrent: frames sent from many goroutines at once
// arrive whole, each once.
func TestWireWriterConcurrent(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	w := client.NewWireWriter(a, 10*time.Second)
	const senders, each = 16, 50
	got := make(chan map[string]int, 1)
	go func() {
		seen := map[string]int{}
		br := bufio.NewReader(b)
		for range senders * each {
			body, err := client.ReadWireFrame(br, nil, 1<<20)
			if err != nil {
				break
			}
			r, err := client.DecodeWireRequest(body)
			if err != nil {
				break
			}
			seen[string(r.Key)]++
		}
		got <- seen
	}()
	var wg sync.WaitGroup
	for g := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				key := fmt.Sprintf("%d/%d", g, i)
				err := w.Send(func(buf []byte) []byte {
					return client.AppendWireRequest(buf, &client.WireRequest{ID: 1, Op: client.WirePut, Key: []byte(key), Value: bytes.Repeat([]byte{'v'}, i)})
				})
				if err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	seen := <-got
	if len(seen) != senders*each {
		t.Fatalf("%d distinct frames arrived; want %d", len(seen), senders*each)
	}
	for k, n := range seen {
		if n != 1 {
			t.Fatalf("frame %s arrived %d times", k, n)
		}
	}
	b.Close()
	if err := w.Send(func(buf []byte) []byte { return append(buf, 0, 0, 0, 0) }); err == nil {
		t.Fatal("Send to a closed pipe succeeded")
	}
	if err := w.Send(func(buf []byte) []byte { return append(buf, 0, 0, 0, 0) }); err == nil {
		t.Fatal("Send after a failed write succeeded")
	}
}

// gatedConn records what is written to it, each Write waiting until the
// test lets it through.
type gatedConn struct {
	net.Conn
	entered chan struct{}
	gate    chan struct{}
	mu      sync.Mutex
	written [][]byte
}

func (c *gatedConn) Write(b []byte) (int, error) {
	c.entered <- struct{}{}
	<-c.gate
	c.mu.Lock()
	c.written = append(c.written, append([]byte(nil), b...))
	c.mu.Unlock()
	return len(b), nil
}

// TestWireWriterBatches: a frame sent while another goroutine writes is
// not written by its sender, which returns at once, but by the writer,
// in one write after its own.
func TestWireWriterBatches(t *testing.T) {
	a, _ := net.Pipe()
	defer a.Close()
	c := &gatedConn{Conn: a, entered: make(chan struct{}), gate: make(chan struct{})}
	w := client.NewWireWriter(c, time.Minute)
	frame := func(s string) func([]byte) []byte {
		return func(b []byte) []byte { return append(b, s...) }
	}
	first := make(chan error)
	go func() { first <- w.Send(frame("a")) }()
	<-c.entered // the first sender writes "a" and waits at the gate
	if err := w.Send(frame("b")); err != nil {
		t.Fatal(err)
	}
	if err := w.Send(frame("c")); err != nil {
		t.Fatal(err)
	}
	c.gate <- struct{}{}
	select {
	case <-c.entered: // the first sender writes again: what was sent meanwhile
	case err := <-first:
		t.Fatalf("the writer returned (%v) leaving the frames sent meanwhile unwritten", err)
	}
	c.gate <- struct{}{}
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if len(c.written) != 2 || string(c.written[0]) != "a" || string(c.written[1]) != "bc" {
		t.Fatalf("writes %q; want \"a\" then \"bc\"", c.written)
	}
}

// FuzzDecodeWireRequest: no input makes the decoder panic, and what it
// decodes encodes back to a frame that decodes to the same request.
func FuzzDecodeWireRequest(f *testing.F) {
	f.Add(client.AppendWireRequest(nil, &client.WireRequest{ID: 1, Op: client.WirePut, Key: []byte("k"), Value: []byte("v"), TTL: 5, Context: "c"})[4:])
	f.Add([]byte{0x18, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := client.DecodeWireRequest(b)
		if err != nil {
			return
		}
		if r.Op != client.WirePut {
			r.Value = nil // only a put's value is sent
		} else if r.Value == nil {
			r.Value = []byte{}
		}
		again, err := client.DecodeWireRequest(client.AppendWireRequest(nil, &r)[4:])
		if err != nil || !reflect.DeepEqual(again, r) {
			t.Fatalf("re-encoded %+v decodes to %+v, %v", r, again, err)
		}
	})
}

// FuzzDecodeWireResponse: as FuzzDecodeWireRequest, for answers.
func FuzzDecodeWireResponse(f *testing.F) {
	f.Add(client.AppendWireResponse(nil, &client.WireResponse{ID: 1, Status: 200, Siblings: []client.WireSibling{{Value: []byte("a"), Timestamp: 3}}})[4:])
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := client.DecodeWireResponse(b)
		if err != nil {
			return
		}
		again, err := client.DecodeWireResponse(client.AppendWireResponse(nil, &r)[4:])
		if err != nil || !reflect.DeepEqual(again, r) {
			t.Fatalf("re-encoded %+v decodes to %+v, %v", r, again, err)
		}
	})
}
