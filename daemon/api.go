package daemon

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/pprof"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/libp2p/go-libp2p/core/peer"
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
	kv := map[string]http.HandlerFunc{
		http.MethodPut:    d.instrument("put", d.keyed(kvPrefix, d.handlePut)),
		http.MethodGet:    d.instrument("get", d.keyed(kvPrefix, d.handleGet)),
		http.MethodDelete: d.instrument("delete", d.keyed(kvPrefix, d.handleDelete)),
	}
	locate := d.instrument("locate", d.keyed(locatePrefix, d.handleLocate))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.EscapedPath()
		switch {
		case strings.HasPrefix(p, kvPrefix):
			if h, ok := kv[r.Method]; ok {
				h(w, r)
				return
			}
			methodNotAllowed("GET, PUT, DELETE")(w, r)
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
		seg := strings.TrimPrefix(r.URL.EscapedPath(), prefix)
		if strings.Contains(seg, "/") {
			writeError(w, http.StatusBadRequest, "the key must be one path segment: percent-encode '/' in keys as %%2F")
			return
		}
		key, err := url.PathUnescape(seg)
		switch {
		case err != nil:
			writeError(w, http.StatusBadRequest, "the key is not validly percent-encoded: %v", err)
		case key == "":
			writeError(w, http.StatusBadRequest, "empty key: give a key of 1 to %d bytes", d.cfg.MaxKeySize)
		case len(key) > d.cfg.MaxKeySize:
			writeError(w, http.StatusBadRequest, "key is %d bytes, over the %d-byte limit (max_key_size): use a shorter key", len(key), d.cfg.MaxKeySize)
		default:
			h(w, r, []byte(key))
		}
	}
}

func (d *Daemon) handlePut(w http.ResponseWriter, r *http.Request, key []byte) {
	opts, ok := d.writeOptions(w, r)
	if !ok {
		return
	}
	if opts.TTL < 0 {
		writeError(w, http.StatusBadRequest, "ttl must be positive")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, int64(d.cfg.MaxValueSize))
	value, err := io.ReadAll(r.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(w, http.StatusRequestEntityTooLarge, "value is over the %d-byte limit (max_value_size): store a smaller value", d.cfg.MaxValueSize)
			return
		}
		writeError(w, http.StatusBadRequest, "reading the value: %v", err)
		return
	}
	res, err := d.node.Put(r.Context(), key, value, opts)
	if err != nil {
		writeNodeError(w, err)
		return
	}
	d.writeWriteResult(w, res)
}

func (d *Daemon) handleDelete(w http.ResponseWriter, r *http.Request, key []byte) {
	opts, ok := d.writeOptions(w, r)
	if !ok {
		return
	}
	res, err := d.node.Delete(r.Context(), key, opts)
	if err != nil {
		writeNodeError(w, err)
		return
	}
	d.writeWriteResult(w, res)
}

func (d *Daemon) writeWriteResult(w http.ResponseWriter, res node.WriteResult) {
	w.Header().Set(client.HeaderContext, res.Context)
	writeJSON(w, http.StatusOK, client.WriteResponse{
		Context:     res.Context,
		Acks:        res.Acks,
		Hinted:      res.Hinted,
		Coordinator: d.peerText(res.Coordinator),
	})
}

// peerText is id's text form. Encoding a peer ID in base58 costs more
// than the rest of a write's answer, and this node coordinates most of
// the writes it is sent, so its own is encoded once.
func (d *Daemon) peerText(id peer.ID) string {
	if id == d.self {
		return d.selfText
	}
	return id.String()
}

func (d *Daemon) handleGet(w http.ResponseWriter, r *http.Request, key []byte) {
	opts, ok := d.readOptions(w, r)
	if !ok {
		return
	}
	res, err := d.node.Get(r.Context(), key, opts)
	if res.Answered > 0 {
		w.Header().Set(client.HeaderAnswered, strconv.Itoa(res.Answered))
		w.Header().Set(client.HeaderHinted, strconv.Itoa(res.Hinted))
	}
	if err != nil {
		writeNodeError(w, err)
		return
	}
	w.Header().Set(client.HeaderContext, res.Context)
	w.Header().Set(client.HeaderSiblings, strconv.Itoa(len(res.Siblings)))
	wantJSON := r.URL.Query().Get("format") == "json" || strings.Contains(r.Header.Get("Accept"), "application/json")
	if len(res.Siblings) == 1 && !wantJSON {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.WriteHeader(http.StatusOK)
		w.Write(res.Siblings[0].Value)
		return
	}
	body := client.GetResponse{Key: string(key), Context: res.Context, Answered: res.Answered, Hinted: res.Hinted}
	if !res.ExpiresAt.IsZero() {
		t := res.ExpiresAt.UTC()
		body.ExpiresAt = &t
	}
	for _, s := range res.Siblings {
		sj := client.Sibling{Value: string(s.Value), Timestamp: time.Unix(0, s.Timestamp).UTC()}
		if s.ExpiresAt != 0 {
			t := time.Unix(0, s.ExpiresAt).UTC()
			sj.ExpiresAt = &t
		}
		if !utf8.Valid(s.Value) {
			sj.Value, sj.Encoding = base64.StdEncoding.EncodeToString(s.Value), "base64"
		}
		body.Siblings = append(body.Siblings, sj)
	}
	status := http.StatusOK
	if len(res.Siblings) > 1 && !wantJSON {
		status = http.StatusMultipleChoices
	}
	writeJSON(w, status, body)
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

// writeOptions reads w, consistency, ttl and the context header.
func (d *Daemon) writeOptions(w http.ResponseWriter, r *http.Request) (node.WriteOptions, bool) {
	q := r.URL.Query()
	n, ok := d.quorumParam(w, q.Get("w"), q.Get("consistency"), "w")
	if !ok {
		return node.WriteOptions{}, false
	}
	opts := node.WriteOptions{W: n, Context: r.Header.Get(client.HeaderContext)}
	if s := q.Get("ttl"); s != "" {
		ttl, err := time.ParseDuration(s)
		if err != nil || ttl <= 0 || ttl > node.MaxTTL {
			writeError(w, http.StatusBadRequest, "ttl %q is not a positive duration of at most 100 years, such as 30s or 24h", s)
			return opts, false
		}
		opts.TTL = ttl
	}
	return opts, true
}

func (d *Daemon) readOptions(w http.ResponseWriter, r *http.Request) (node.ReadOptions, bool) {
	q := r.URL.Query()
	n, ok := d.quorumParam(w, q.Get("r"), q.Get("consistency"), "r")
	return node.ReadOptions{R: n}, ok
}

// quorumParam turns ?w=K / ?r=K or ?consistency=one|quorum|all into a
// replica count (0 = cluster default).
func (d *Daemon) quorumParam(w http.ResponseWriter, num, level, name string) (int, bool) {
	if num != "" && level != "" {
		writeError(w, http.StatusBadRequest, "give either %s or consistency, not both", name)
		return 0, false
	}
	n, err := ParseQuorum(num, level, d.cfg.Replicas)
	if err != nil {
		writeError(w, http.StatusBadRequest, "%s: %v", name, err)
		return 0, false
	}
	return n, true
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

// writeNodeError maps the node's errors to HTTP statuses.
func writeNodeError(w http.ResponseWriter, err error) {
	var qe *node.QuorumError
	switch {
	case errors.Is(err, dht.ErrNotFound):
		writeError(w, http.StatusNotFound, "key not found")
	case errors.As(err, &qe):
		writeError(w, http.StatusServiceUnavailable, "%s", qe.Error())
	case errors.Is(err, node.ErrBadContext):
		writeError(w, http.StatusBadRequest, "%v", err)
	case errors.Is(err, node.ErrTooManySiblings):
		writeError(w, http.StatusConflict, "%v", err)
	case errors.Is(err, node.ErrUnavailable), errors.Is(err, node.ErrOutcomeUnknown):
		writeError(w, http.StatusServiceUnavailable, "%v", err)
	case errors.Is(err, context.DeadlineExceeded):
		writeError(w, http.StatusGatewayTimeout, "the request timed out: %v", err)
	case errors.Is(err, context.Canceled):
		writeError(w, 499, "the request was cancelled")
	default:
		writeError(w, http.StatusInternalServerError, "%v", err)
	}
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
