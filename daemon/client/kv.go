package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
)

// KV is a lean client for the key-value endpoints alone, for load
// generators: it speaks the same HTTP API as Client through fasthttp's
// client, which costs about a third of net/http's CPU per request. On a
// machine whose cores the daemons share with the load generator, that CPU
// would otherwise be taken from the daemons being measured. Safe for
// concurrent use.
type KV struct {
	hc   *fasthttp.HostClient
	addr string
	base string // "http://" + addr + "/v1/kv/"
}

// defaultKVTimeout bounds a request whose ctx has no deadline.
const defaultKVTimeout = 30 * time.Second

// NewKV returns a KV client for the daemon at addr (host:port or an
// http:// URL) keeping up to conns connections open.
func NewKV(addr string, conns int) (*KV, error) {
	host, err := apiHost(addr)
	if err != nil {
		return nil, err
	}
	return &KV{addr: host, base: "http://" + host + "/v1/kv/", hc: &fasthttp.HostClient{
		Addr:                          host,
		MaxConns:                      max(conns, 1),
		MaxIdleConnDuration:           90 * time.Second,
		DisableHeaderNamesNormalizing: true,
		NoDefaultUserAgentHeader:      true,
		// Send the escaped key as KeyPath wrote it: normalizing would
		// decode %2F and %2E and drop "." and ".." segments.
		DisablePathNormalizing: true,
	}}, nil
}

// apiHost is the host:port of an API address given as host:port or as an
// http:// URL.
func apiHost(addr string) (string, error) {
	if !strings.Contains(addr, "://") {
		return addr, nil
	}
	u, err := url.Parse(addr)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return "", fmt.Errorf("client: API address %q is not host:port or an http:// URL", addr)
	}
	return u.Host, nil
}

// Close drops idle connections.
func (c *KV) Close() { c.hc.CloseIdleConnections() }

// Put stores value under key, as Client.Put. Only the context of the
// answer is filled in (from its header): the rest of the JSON body is not
// decoded.
func (c *KV) Put(ctx context.Context, key, value []byte, o WriteOptions) (WriteResponse, error) {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	c.setURI(req, key, o.query())
	req.Header.SetMethod(fasthttp.MethodPut)
	if o.Context != "" {
		req.Header.Set(HeaderContext, o.Context)
	}
	req.SetBodyRaw(value)
	if err := c.do(ctx, req, resp); err != nil {
		return WriteResponse{}, err
	}
	return WriteResponse{Context: string(resp.Header.Peek(HeaderContext))}, nil
}

// Ping makes a round trip to the daemon that does no other work (GET
// /livez).
func (c *KV) Ping(ctx context.Context) error {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI("http://" + c.addr + "/livez")
	req.Header.SetMethod(fasthttp.MethodGet)
	return c.do(ctx, req, resp)
}

// GetValue reads key's raw value, as Client.GetValue: with siblings it
// returns the JSON listing them.
func (c *KV) GetValue(ctx context.Context, key []byte, o ReadOptions) ([]byte, error) {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	c.setURI(req, key, o.query())
	req.Header.SetMethod(fasthttp.MethodGet)
	if err := c.do(ctx, req, resp); err != nil {
		return nil, err
	}
	return append([]byte(nil), resp.Body()...), nil
}

// setURI sets the request's URI to key's path with query q. A key of
// letters, digits and "-_~:", which KeyPath leaves as it is, is copied
// without escaping.
func (c *KV) setURI(req *fasthttp.Request, key []byte, q url.Values) {
	buf := uriPool.Get().(*[]byte)
	b := append((*buf)[:0], c.base...)
	if plainKey(key) {
		b = append(b, key...)
	} else {
		b = append(b, KeyPath("", key)...)
	}
	if len(q) > 0 {
		b = append(append(b, '?'), q.Encode()...)
	}
	req.SetRequestURIBytes(b)
	*buf = b
	uriPool.Put(buf)
}

var uriPool = sync.Pool{New: func() any { b := make([]byte, 0, 128); return &b }}

// plainKey reports whether key is non-empty and only holds bytes that
// KeyPath does not escape.
func plainKey(key []byte) bool {
	for _, c := range key {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_', c == '~', c == ':':
		default:
			return false
		}
	}
	return len(key) > 0
}

// do sends req and maps transport failures and non-2xx answers to the
// errors Client returns.
func (c *KV) do(ctx context.Context, req *fasthttp.Request, resp *fasthttp.Response) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(defaultKVTimeout)
	}
	if err := c.hc.DoDeadline(req, resp, deadline); err != nil {
		if errors.Is(err, fasthttp.ErrTimeout) && ctx.Err() != nil {
			return ctx.Err()
		}
		if isConnError(err) || errors.Is(err, fasthttp.ErrConnectionClosed) {
			return fmt.Errorf("%w at %s: %v", ErrUnreachable, c.addr, rootCause(err))
		}
		return fmt.Errorf("client: %s %s: %w", req.Header.Method(), req.URI().Path(), err)
	}
	status := resp.StatusCode()
	if status/100 == 2 || (status == fasthttp.StatusMultipleChoices && req.Header.IsGet()) {
		return nil
	}
	msg := strings.TrimSpace(string(resp.Body()))
	var eb ErrorBody
	if json.Unmarshal(resp.Body(), &eb) == nil && eb.Error != "" {
		msg = eb.Error
	}
	ae := &APIError{Status: status, Message: msg}
	if status == fasthttp.StatusNotFound {
		return notFound(ae)
	}
	return ae
}
