package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/pprof"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ringkv/ringkv/daemon/client"
	"github.com/ringkv/ringkv/dht"
	"github.com/ringkv/ringkv/dht/node"
)

// routes builds the API's handler. Every error is JSON {"error": "..."}.
// routes builds the API's handler. Every error is JSON {"error": "..."}.
// Key paths are routed by hand, from the escaped path, so that any byte
// string is a key: ServeMux would clean "." and ".." segments and split on
// an encoded "/".
func (d *Daemon) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", d.instrument("status", d.handleStatus))
	mux.HandleFunc("GET /v1/peers", d.instrument("peers", d.handlePeers))
	mux.HandleFunc("GET /v1/members", d.instrument("members", d.handleMembers))
	mux.HandleFunc("GET /v1/ring", d.instrument("ring", d.handleRing))
	mux.HandleFunc("POST /v1/leave", d.instrument("leave", d.handleLeave))
	mux.HandleFunc("POST /v1/repair", d.instrument("repair", d.handleRepair))
	mux.HandleFunc("GET /v1/roots", d.instrument("roots", d.handleRoots))
	for _, p := range []string{"/v1/status", "/v1/peers", "/v1/members", "/v1/ring", "/v1/roots"} {
		mux.HandleFunc(p, methodNotAllowed("GET"))
	}
	for _, p := range []string{"/v1/leave", "/v1/repair"} {
		mux.HandleFunc(p, methodNotAllowed("POST"))
	}
	mux.HandleFunc("GET /livez", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "live"})
	})
	mux.HandleFunc("GET /readyz", d.handleReady)
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	mux.Handle("GET /metrics", promhttp.HandlerFor(d.metrics.registry, promhttp.HandlerOpts{Registry: d.metrics.registry}))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such endpoint %s; the API lives under /v1 (see the README's API reference)", r.URL.Path)
	})
	locate := d.instrument("locate", d.keyed(locatePrefix, d.handleLocate))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.EscapedPath()
		switch {
		case strings.HasPrefix(p, locatePrefix):
			if r.Method == http.MethodGet {
				locate(w, r)
				return
			}
			methodNotAllowed("GET")(w, r)
		default:
			mux.ServeHTTP(w, r)
		}
	})
}

const (
	kvPrefix     = "/v1/kv/"
	locatePrefix = "/v1/locate/"
)

// keyed extracts and checks the key: the one escaped path segment after
// prefix, percent-decoded.
func (d *Daemon) keyed(prefix string, h func(http.ResponseWriter, *http.Request, []byte)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		key, err := d.parseKey(strings.TrimPrefix(r.URL.EscapedPath(), prefix))
		if err != nil {
			writeError(w, http.StatusBadRequest, "%v", err)
			return
		}
		h(w, r, key)
	}
}

// parseKey decodes the escaped path segment that names a key and checks
// it, or says what is wrong with it.
func (d *Daemon) parseKey(seg string) ([]byte, error) {
	if strings.Contains(seg, "/") {
		return nil, errors.New("the key must be one path segment: percent-encode '/' in keys as %2F")
	}
	key, err := url.PathUnescape(seg)
	if err != nil {
		return nil, fmt.Errorf("the key is not validly percent-encoded: %v", err)
	}
	return []byte(key), d.checkKey([]byte(key))
}

// checkKey refuses an empty key and one over max_key_size.
func (d *Daemon) checkKey(key []byte) error {
	switch {
	case len(key) == 0:
		return fmt.Errorf("empty key: give a key of 1 to %d bytes", d.cfg.MaxKeySize)
	case len(key) > d.cfg.MaxKeySize:
		return fmt.Errorf("key is %d bytes, over the %d-byte limit (max_key_size): use a shorter key", len(key), d.cfg.MaxKeySize)
	}
	return nil
}

func (d *Daemon) handleLocate(w http.ResponseWriter, r *http.Request, key []byte) {
	q := r.URL.Query()
	opts := node.LocateOptions{Trace: q.Get("trace") != "" && q.Get("trace") != "0" && q.Get("trace") != "false"}
	switch q.Get("mode") {
	case "", "iterative":
	case "recursive":
		opts.Recursive = true
	default:
		writeError(w, http.StatusBadRequest, "mode %q is not iterative or recursive", q.Get("mode"))
		return
	}
	loc, err := d.node.Locate(r.Context(), key, opts)
	if err != nil {
		writeNodeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, LocateJSON(loc))
}

// ParseQuorum converts a numeric quorum or a level name to a count for
// replicas n. Both empty gives 0 (the cluster default).
func ParseQuorum(num, level string, n int) (int, error) {
	if num != "" {
		k, err := strconv.Atoi(num)
		if err != nil || k < 1 || k > n {
			return 0, fmt.Errorf("%q must be a number from 1 to %d (the replica count)", num, n)
		}
		return k, nil
	}
	switch level {
	case "":
		return 0, nil
	case "one":
		return 1, nil
	case "quorum":
		return n/2 + 1, nil
	case "all":
		return n, nil
	}
	return 0, fmt.Errorf("consistency %q is not one, quorum or all", level)
}

func (d *Daemon) handleReady(w http.ResponseWriter, r *http.Request) {
	if reason := d.notReady(); reason != "" {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "not ready", "reason": reason})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

// instrument counts and times a request under op, and stops accepting work
// once shutdown began.
func (d *Daemon) instrument(op string, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		if d.stopping.Load() {
			writeError(sw, http.StatusServiceUnavailable, "the daemon is shutting down; retry on another node")
		} else {
			h(sw, r)
		}
		d.metrics.observe(op, sw.status, time.Since(start))
	}
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

func methodNotAllowed(allow string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", allow)
		writeError(w, http.StatusMethodNotAllowed, "method %s is not allowed on %s; use %s", r.Method, r.URL.Path, allow)
	}
}

// writeNodeError answers the node's error err (see nodeErrorStatus).
func writeNodeError(w http.ResponseWriter, err error) {
	status, msg := nodeErrorStatus(err)
	writeError(w, status, "%s", msg)
}

// nodeErrorStatus maps the node's errors to HTTP statuses and messages.
func nodeErrorStatus(err error) (int, string) {
	var qe *node.QuorumError
	switch {
	case errors.Is(err, dht.ErrNotFound):
		return http.StatusNotFound, "key not found"
	case errors.As(err, &qe):
		return http.StatusServiceUnavailable, qe.Error()
	case errors.Is(err, node.ErrBadContext):
		return http.StatusBadRequest, err.Error()
	case errors.Is(err, node.ErrTooManySiblings):
		return http.StatusConflict, err.Error()
	case errors.Is(err, node.ErrUnavailable), errors.Is(err, node.ErrOutcomeUnknown):
		return http.StatusServiceUnavailable, err.Error()
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusGatewayTimeout, "the request timed out: " + err.Error()
	case errors.Is(err, context.Canceled):
		return 499, "the request was cancelled"
	}
	return http.StatusInternalServerError, err.Error()
}

func writeError(w http.ResponseWriter, status int, format string, args ...any) {
	writeJSON(w, status, client.ErrorBody{Error: fmt.Sprintf(format, args...)})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.Encode(v)
}
