package client_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ringkv/ringkv/daemon/client"
)

// kvServer answers like the daemon's KV endpoints: PUT stores the body
// and echoes the context header it got, plus one; GET returns the value,
// 404 for a missing key, 300 with JSON for "siblings", 503 for "down".
func kvServer(t *testing.T) *httptest.Server {
	t.Helper()
	values := map[string]string{"siblings": `{"siblings":[{"value":"a"},{"value":"b"}]}`}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := strings.TrimPrefix(r.URL.EscapedPath(), "/v1/kv/")
		switch {
		case key == "down":
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, `{"error":"only 1 replica(s) acknowledged the write, W=2 required"}`)
		case r.Method == http.MethodPut:
			b, _ := io.ReadAll(r.Body)
			values[key] = string(b)
			w.Header().Set(client.HeaderContext, r.Header.Get(client.HeaderContext)+"+"+r.URL.Query().Get("w"))
			io.WriteString(w, `{"context":"ignored"}`)
		case key == "siblings":
			w.WriteHeader(http.StatusMultipleChoices)
			io.WriteString(w, values[key])
		case values[key] != "":
			io.WriteString(w, values[key])
		default:
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, `{"error":"key not found"}`)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestKVPutGet(t *testing.T) {
	srv := kvServer(t)
	for _, addr := range []string{srv.URL, strings.TrimPrefix(srv.URL, "http://")} {
		kv, err := client.NewKV(addr, 4)
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		res, err := kv.Put(ctx, []byte("k"), []byte("v1"), client.WriteOptions{W: 2, Context: "c0"})
		if err != nil || res.Context != "c0+2" {
			t.Fatalf("Put = %+v, %v; want context c0+2 from the header", res, err)
		}
		got, err := kv.GetValue(ctx, []byte("k"), client.ReadOptions{})
		if err != nil || string(got) != "v1" {
			t.Fatalf("GetValue = %q, %v; want v1", got, err)
		}
		sib, err := kv.GetValue(ctx, []byte("siblings"), client.ReadOptions{})
		if err != nil || !strings.Contains(string(sib), `"siblings"`) {
			t.Fatalf("GetValue(siblings) = %q, %v; want the JSON listing", sib, err)
		}
		kv.Close()
	}
}

func TestKVErrors(t *testing.T) {
	srv := kvServer(t)
	kv, err := client.NewKV(srv.URL, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer kv.Close()
	ctx := context.Background()
	_, err = kv.GetValue(ctx, []byte("missing"), client.ReadOptions{})
	var nf *client.APIError
	if !errors.Is(err, client.ErrNotFound) || !errors.As(err, &nf) || nf.Status != http.StatusNotFound {
		t.Fatalf("GetValue(missing) err = %v, want ErrNotFound and the 404 APIError", err)
	}
	if got := err.Error(); got != client.ErrNotFound.Error() {
		t.Fatalf("GetValue(missing) says %q, want %q, once", got, client.ErrNotFound.Error())
	}
	_, err = kv.Put(ctx, []byte("down"), []byte("v"), client.WriteOptions{})
	var ae *client.APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusServiceUnavailable || !strings.Contains(ae.Message, "W=2 required") {
		t.Fatalf("Put(down) err = %v, want a 503 APIError with the daemon's message", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := kv.GetValue(cctx, []byte("k"), client.ReadOptions{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("GetValue with a cancelled ctx err = %v, want context.Canceled", err)
	}
}

func TestKVUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	kv, err := client.NewKV(addr, 1)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := kv.GetValue(ctx, []byte("k"), client.ReadOptions{}); !errors.Is(err, client.ErrUnreachable) {
		t.Fatalf("GetValue err = %v, want ErrUnreachable", err)
	}
}

func TestNewKVRejectsBadAddress(t *testing.T) {
	for _, addr := range []string{"https://127.0.0.1:1", "http://", "ftp://x"} {
		if _, err := client.NewKV(addr, 1); err == nil {
			t.Errorf("NewKV(%q) = nil error, want one", addr)
		}
	}
}

// TestKVKeyPaths checks that KV sends every key under the path KeyPath
// gives it, whether or not the key needs escaping.
func TestKVKeyPaths(t *testing.T) {
	got := make(chan string, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.URL.EscapedPath()
	}))
	t.Cleanup(srv.Close)
	kv, err := client.NewKV(srv.URL, 1)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"bench:42", "A-z_0~9", ".", "..", "a.b", "a/b", "%2F", "ü", "a b", "a?b", "a#b", "\x00"} {
		if _, err := kv.Put(context.Background(), []byte(k), nil, client.WriteOptions{}); err != nil {
			t.Fatalf("put %q: %v", k, err)
		}
		if p, want := <-got, client.KeyPath("/v1/kv/", []byte(k)); p != want {
			t.Errorf("key %q sent as %q; want %q", k, p, want)
		}
	}
}
