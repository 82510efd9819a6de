package daemon

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// serveErrors serves a handler that answers "ok" behind apiErrorHandler,
// with a short read timeout, and returns its address.
func serveErrors(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &fasthttp.Server{
		Handler:            func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("ok") },
		ErrorHandler:       apiErrorHandler(16),
		ReadTimeout:        100 * time.Millisecond,
		MaxRequestBodySize: 32,
	}
	go s.Serve(ln)
	t.Cleanup(func() { s.Shutdown() })
	return ln.Addr().String()
}

// exchange sends raw on a new connection and returns everything the
// server sends before it closes the connection.
func exchange(t *testing.T, addr, raw string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if raw != "" {
		if _, err := io.WriteString(c, raw); err != nil {
			t.Fatal(err)
		}
	}
	// A guard against a server that never closes, far above the read
	// timeout; the server's close ends the read.
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("reading the answer to %q: %v", raw, err)
	}
	return string(b)
}

func TestAPIErrorHandler(t *testing.T) {
	addr := serveErrors(t)
	cases := []struct {
		name, send, status, body string
	}{
		{"unused connection", "", "", ""},
		{"request cut short", "GET /v1/kv/a HTTP/1.1\r\nHost: x\r\nX-Pa", "408", "did not arrive whole"},
		{"body cut short", "PUT /v1/kv/a HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc", "", ""},
		{"garbage", "NOT HTTP\r\n\r\n", "400", "malformed request"},
		{"body too large", "PUT /v1/kv/a HTTP/1.1\r\nHost: x\r\nContent-Length: 64\r\n\r\n" + strings.Repeat("v", 64), "413", "16-byte limit"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := exchange(t, addr, tc.send)
			if tc.status == "" {
				if got != "" {
					t.Fatalf("got %q; want the connection closed without an answer", got)
				}
				return
			}
			resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(got)), nil)
			if err != nil {
				t.Fatalf("answer %q: %v", got, err)
			}
			body, _ := io.ReadAll(resp.Body)
			if !strings.HasPrefix(resp.Status, tc.status) || !strings.Contains(string(body), tc.body) {
				t.Fatalf("answer %s %q; want %s with %q", resp.Status, body, tc.status, tc.body)
			}
		})
	}
	if got := exchange(t, addr, "GET /v1/kv/a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"); !strings.HasSuffix(got, "ok") {
		t.Fatalf("a whole request got %q; want ok", got)
	}
}
