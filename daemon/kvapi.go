package daemon

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/valyala/fasthttp"

	"github.com/ringkv/ringkv/daemon/client"
	"github.com/ringkv/ringkv/dht/node"
)

// The key-value endpoints, GET, PUT and DELETE /v1/kv/{key}, served by
// fasthttp (see server.go). The key is the one escaped path segment after
// the prefix, percent-decoded, so that any byte string is a key.

const kvMethods = "GET, PUT, DELETE"

// serveKV answers a request for /v1/kv/ followed by seg, the escaped path
// after the prefix. It counts and times the request under its operation,
// and refuses work once shutdown began.
func (d *Daemon) serveKV(ctx *fasthttp.RequestCtx, seg []byte) {
	var op string
	var h func(*fasthttp.RequestCtx, []byte)
	switch {
	case ctx.IsPut():
		op, h = "put", d.kvPut
	case ctx.IsGet():
		op, h = "get", d.kvGet
	case ctx.IsDelete():
		op, h = "delete", d.kvDelete
	default:
		ctx.Response.Header.Set("Allow", kvMethods)
		fastError(ctx, http.StatusMethodNotAllowed, "method %s is not allowed on %s; use %s", ctx.Method(), decodedPath(ctx), kvMethods)
		return
	}
	start := time.Now()
	if d.stopping.Load() {
		fastError(ctx, http.StatusServiceUnavailable, "the daemon is shutting down; retry on another node")
	} else if key, ok := d.kvKey(ctx, seg); ok {
		h(ctx, key)
	}
	d.metrics.observe(op, ctx.Response.StatusCode(), time.Since(start))
}

// kvKey decodes and checks the key, or answers 400.
func (d *Daemon) kvKey(ctx *fasthttp.RequestCtx, seg []byte) ([]byte, bool) {
	key, err := d.parseKey(string(seg))
	if err != nil {
		fastError(ctx, http.StatusBadRequest, "%v", err)
		return nil, false
	}
	return key, true
}

func (d *Daemon) kvPut(ctx *fasthttp.RequestCtx, key []byte) {
	opts, ok := d.kvWriteOptions(ctx)
	if !ok {
		return
	}
	body := ctx.PostBody()
	if len(body) > d.cfg.MaxValueSize {
		fastError(ctx, http.StatusRequestEntityTooLarge, "value is over the %d-byte limit (max_value_size): store a smaller value", d.cfg.MaxValueSize)
		return
	}
	// The body's buffer is reused once the answer is sent; replica
	// writes still in flight then keep the value.
	value := bytes.Clone(body)
	if value == nil {
		value = []byte{}
	}
	res, err := d.node.Put(d.ctx, key, value, opts)
	if err != nil {
		fastNodeError(ctx, err)
		return
	}
	d.kvWriteResult(ctx, res)
}

func (d *Daemon) kvDelete(ctx *fasthttp.RequestCtx, key []byte) {
	opts, ok := d.kvWriteOptions(ctx)
	if !ok {
		return
	}
	res, err := d.node.Delete(d.ctx, key, opts)
	if err != nil {
		fastNodeError(ctx, err)
		return
	}
	d.kvWriteResult(ctx, res)
}

func (d *Daemon) kvWriteResult(ctx *fasthttp.RequestCtx, res node.WriteResult) {
	ctx.Response.Header.Set(client.HeaderContext, res.Context)
	fastJSON(ctx, http.StatusOK, client.WriteResponse{
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

func (d *Daemon) kvGet(ctx *fasthttp.RequestCtx, key []byte) {
	args := ctx.QueryArgs()
	n, ok := d.kvQuorum(ctx, args.Peek("r"), args.Peek("consistency"), "r")
	if !ok {
		return
	}
	res, err := d.node.Get(d.ctx, key, node.ReadOptions{R: n})
	h := &ctx.Response.Header
	if res.Answered > 0 {
		h.Set(client.HeaderAnswered, strconv.Itoa(res.Answered))
		h.Set(client.HeaderHinted, strconv.Itoa(res.Hinted))
	}
	if err != nil {
		fastNodeError(ctx, err)
		return
	}
	h.Set(client.HeaderContext, res.Context)
	h.Set(client.HeaderSiblings, strconv.Itoa(len(res.Siblings)))
	wantJSON := string(args.Peek("format")) == "json" || strings.Contains(string(ctx.Request.Header.Peek("Accept")), "application/json")
	if len(res.Siblings) == 1 && !wantJSON {
		ctx.SetContentType("application/octet-stream")
		ctx.SetStatusCode(http.StatusOK)
		ctx.SetBody(res.Siblings[0].Value)
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
	fastJSON(ctx, status, body)
}

// kvWriteOptions reads w, consistency, ttl and the context header, or
// answers 400.
func (d *Daemon) kvWriteOptions(ctx *fasthttp.RequestCtx) (node.WriteOptions, bool) {
	args := ctx.QueryArgs()
	n, ok := d.kvQuorum(ctx, args.Peek("w"), args.Peek("consistency"), "w")
	if !ok {
		return node.WriteOptions{}, false
	}
	opts := node.WriteOptions{W: n, Context: string(ctx.Request.Header.Peek(client.HeaderContext))}
	if s := string(args.Peek("ttl")); s != "" {
		ttl, err := time.ParseDuration(s)
		if err != nil || ttl <= 0 || ttl > node.MaxTTL {
			fastError(ctx, http.StatusBadRequest, "ttl %q is not a positive duration of at most 100 years, such as 30s or 24h", s)
			return opts, false
		}
		opts.TTL = ttl
	}
	return opts, true
}

// kvQuorum turns ?w=K or ?r=K, or ?consistency=one|quorum|all, into a
// replica count (0 for the cluster default), or answers 400.
func (d *Daemon) kvQuorum(ctx *fasthttp.RequestCtx, num, level []byte, name string) (int, bool) {
	n, err := d.quorum(string(num), string(level), name)
	if err != nil {
		fastError(ctx, http.StatusBadRequest, "%v", err)
		return 0, false
	}
	return n, true
}

// quorum turns a request's w or r (name), or its consistency level, into
// a replica count, 0 for the cluster default.
func (d *Daemon) quorum(num, level, name string) (int, error) {
	if num != "" && level != "" {
		return 0, fmt.Errorf("give either %s or consistency, not both", name)
	}
	n, err := ParseQuorum(num, level, d.cfg.Replicas)
	if err != nil {
		return 0, fmt.Errorf("%s: %v", name, err)
	}
	return n, nil
}

// decodedPath is the request's path percent-decoded, as net/http's
// URL.Path.
func decodedPath(ctx *fasthttp.RequestCtx) string {
	p := string(ctx.URI().PathOriginal())
	if u, err := url.PathUnescape(p); err == nil {
		return u
	}
	return p
}

// fastNodeError answers err as writeNodeError does.
func fastNodeError(ctx *fasthttp.RequestCtx, err error) {
	status, msg := nodeErrorStatus(err)
	fastError(ctx, status, "%s", msg)
}

// fastError answers JSON {"error": "..."}, as writeError does.
func fastError(ctx *fasthttp.RequestCtx, status int, format string, args ...any) {
	fastJSON(ctx, status, client.ErrorBody{Error: fmt.Sprintf(format, args...)})
}

// fastJSON answers v in JSON, as writeJSON does.
func fastJSON(ctx *fasthttp.RequestCtx, status int, v any) {
	ctx.SetContentType("application/json")
	ctx.SetStatusCode(status)
	ctx.ResetBody()
	json.NewEncoder(ctx).Encode(v)
}
