// Package client talks to a ringkv daemon's local HTTP API. The CLI, the
// bench command and the tests use it; types.go is the API's JSON schema,
// shared with the daemon.
package client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// HTTP headers of the KV API.
const (
	// HeaderContext carries the opaque causal context: returned by GET, PUT
	// and DELETE, accepted by PUT and DELETE to supersede what was read.
	HeaderContext = "X-Ringkv-Context"
	// HeaderSiblings is the number of concurrent versions a GET found.
	HeaderSiblings = "X-Ringkv-Siblings"
	// HeaderAnswered and HeaderHinted, on every GET answer from the
	// replicas (404 included), count the replicas that answered and the
	// stand-ins for down replicas among them.
	HeaderAnswered = "X-Ringkv-Answered"
	HeaderHinted   = "X-Ringkv-Hinted"
)

// Errors callers test with errors.Is.
var (
	// ErrUnreachable: nothing answers at the API address.
	ErrUnreachable = errors.New("client: daemon unreachable")
	// ErrNotFound: the key does not exist (HTTP 404 on a key).
	ErrNotFound = errors.New("client: key not found")
)

// APIError is a non-2xx answer from the daemon.
type APIError struct {
	Status  int
	Message string
	// Header is the answer's HTTP header.
	Header http.Header
}

func (e *APIError) Error() string { return e.Message }

// notFound wraps a 404 on a key: it is ErrNotFound and ae at once, and
// says "key not found" once, with the daemon's message only when that
// adds something.
func notFound(ae *APIError) error {
	if ae.Message == "" || strings.HasSuffix(ErrNotFound.Error(), ae.Message) {
		return &notFoundError{ae}
	}
	return fmt.Errorf("%w: %w", ErrNotFound, ae)
}

type notFoundError struct{ ae *APIError }

func (e *notFoundError) Error() string   { return ErrNotFound.Error() }
func (e *notFoundError) Unwrap() []error { return []error{ErrNotFound, e.ae} }

// Client is a connection pool to one daemon's API. Safe for concurrent use.
type Client struct {
	base string
	hc   *http.Client
}

// New returns a client for the daemon at addr (host:port or a URL).
// maxConns bounds idle keep-alive connections kept per host (0 = 16).
func New(addr string, maxConns int) *Client {
	if maxConns <= 0 {
		maxConns = 16
	}
	base := addr
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        maxConns,
		MaxIdleConnsPerHost: maxConns,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	return &Client{base: strings.TrimRight(base, "/"), hc: &http.Client{Transport: tr}}
}

// Addr is the base URL.
func (c *Client) Addr() string { return c.base }

// Close drops idle connections.
func (c *Client) Close() { c.hc.CloseIdleConnections() }

// KeyPath is the API path of a key: one percent-encoded segment. Dots are
// encoded too, so "." and ".." stay keys.
func KeyPath(prefix string, key []byte) string {
	esc := url.PathEscape(string(key))
	esc = strings.ReplaceAll(esc, ".", "%2E")
	return prefix + esc
}

// WriteOptions are the optional parameters of Put and Delete.
type WriteOptions struct {
	W           int    // replica acks to wait for; 0 = cluster default
	Consistency string // one, quorum or all; instead of W
	TTL         time.Duration
	Context     string // causal context from a previous read
}

// query is o's query parameters; nil when none is set.
func (o WriteOptions) query() url.Values {
	var q url.Values
	if o.W > 0 {
		q = param(q, "w", strconv.Itoa(o.W))
	}
	if o.Consistency != "" {
		q = param(q, "consistency", o.Consistency)
	}
	if o.TTL > 0 {
		q = param(q, "ttl", o.TTL.String())
	}
	return q
}

// param sets k to v in q, making q if it is nil, so that a request with
// no option set costs no map.
func param(q url.Values, k, v string) url.Values {
	if q == nil {
		q = url.Values{}
	}
	q.Set(k, v)
	return q
}

// ReadOptions are the optional parameters of Get.
type ReadOptions struct {
	R           int
	Consistency string
}

// query is o's query parameters; nil when none is set.
func (o ReadOptions) query() url.Values {
	var q url.Values
	if o.R > 0 {
		q = param(q, "r", strconv.Itoa(o.R))
	}
	if o.Consistency != "" {
		q = param(q, "consistency", o.Consistency)
	}
	return q
}

// Put stores value under key.
func (c *Client) Put(ctx context.Context, key, value []byte, o WriteOptions) (WriteResponse, error) {
	var out WriteResponse
	h := http.Header{}
	if o.Context != "" {
		h.Set(HeaderContext, o.Context)
	}
	err := c.do(ctx, http.MethodPut, KeyPath("/v1/kv/", key), o.query(), h, value, &out)
	return out, err
}

// Delete removes key (writes a tombstone).
func (c *Client) Delete(ctx context.Context, key []byte, o WriteOptions) (WriteResponse, error) {
	var out WriteResponse
	h := http.Header{}
	if o.Context != "" {
		h.Set(HeaderContext, o.Context)
	}
	err := c.do(ctx, http.MethodDelete, KeyPath("/v1/kv/", key), o.query(), h, nil, &out)
	return out, err
}

// Get reads key with all its siblings and causal context.
func (c *Client) Get(ctx context.Context, key []byte, o ReadOptions) (GetResponse, error) {
	var out GetResponse
	q := param(o.query(), "format", "json")
	err := c.do(ctx, http.MethodGet, KeyPath("/v1/kv/", key), q, nil, nil, &out)
	var ae *APIError
	if errors.Is(err, ErrNotFound) && errors.As(err, &ae) {
		out.Answered, _ = strconv.Atoi(ae.Header.Get(HeaderAnswered))
		out.Hinted, _ = strconv.Atoi(ae.Header.Get(HeaderHinted))
	}
	return out, err
}

// GetValue reads key's raw value (the fast path the bench uses). With
// siblings it returns the JSON listing them.
func (c *Client) GetValue(ctx context.Context, key []byte, o ReadOptions) ([]byte, error) {
	var buf bytes.Buffer
	err := c.do(ctx, http.MethodGet, KeyPath("/v1/kv/", key), o.query(), nil, nil, &buf)
	return buf.Bytes(), err
}

// Status returns the daemon's status.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var s Status
	return s, c.do(ctx, http.MethodGet, "/v1/status", nil, nil, nil, &s)
}

// Peers lists connected libp2p peers.
func (c *Client) Peers(ctx context.Context) ([]Peer, error) {
	var p []Peer
	return p, c.do(ctx, http.MethodGet, "/v1/peers", nil, nil, nil, &p)
}

// Members lists cluster members as gossip reports them.
func (c *Client) Members(ctx context.Context) ([]Member, error) {
	var m []Member
	return m, c.do(ctx, http.MethodGet, "/v1/members", nil, nil, nil, &m)
}

// Ring lists each node's share of the ring.
func (c *Client) Ring(ctx context.Context) ([]RingShare, error) {
	var r []RingShare
	return r, c.do(ctx, http.MethodGet, "/v1/ring", nil, nil, nil, &r)
}

// Locate finds key's owner and replicas; trace records every hop.
func (c *Client) Locate(ctx context.Context, key []byte, trace, recursive bool) (Location, error) {
	q := url.Values{}
	if trace {
		q.Set("trace", "1")
	}
	if recursive {
		q.Set("mode", "recursive")
	}
	var l Location
	return l, c.do(ctx, http.MethodGet, KeyPath("/v1/locate/", key), q, nil, nil, &l)
}

// Roots returns the node's Merkle root per replicated arc ("start-end" in
// hex, both sides of the arc (start, end]).
func (c *Client) Roots(ctx context.Context) (map[string]string, error) {
	var m map[string]string
	return m, c.do(ctx, http.MethodGet, "/v1/roots", nil, nil, nil, &m)
}

// Leave asks the node to leave the cluster and exit.
func (c *Client) Leave(ctx context.Context) error {
	return c.do(ctx, http.MethodPost, "/v1/leave", nil, nil, nil, nil)
}

// Ready reports whether /readyz answers 200, with the reason otherwise.
func (c *Client) Ready(ctx context.Context) (bool, string, error) {
	var body struct {
		Status string `json:"status"`
		Reason string `json:"reason"`
	}
	err := c.do(ctx, http.MethodGet, "/readyz", nil, nil, nil, &body)
	var ae *APIError
	if errors.As(err, &ae) && ae.Status == http.StatusServiceUnavailable {
		return false, ae.Message, nil
	}
	if err != nil {
		return false, "", err
	}
	return true, "", nil
}

// Repair runs an anti-entropy round on the node, calling fn with each
// progress line; it returns the final one.
func (c *Client) Repair(ctx context.Context, fn func(RepairProgress)) (RepairProgress, error) {
	resp, err := c.send(ctx, http.MethodPost, "/v1/repair", nil, nil, nil)
	if err != nil {
		return RepairProgress{}, err
	}
	defer resp.Body.Close()
	var last RepairProgress
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		var p RepairProgress
		if err := json.Unmarshal(sc.Bytes(), &p); err != nil {
			return last, fmt.Errorf("client: bad repair progress line: %w", err)
		}
		last = p
		if p.Done {
			if p.Error != "" {
				return p, errors.New(p.Error)
			}
			return p, nil
		}
		if fn != nil {
			fn(p)
		}
	}
	if err := sc.Err(); err != nil {
		return last, fmt.Errorf("client: repair stream: %w", err)
	}
	return last, errors.New("client: repair stream ended before the round finished")
}

// do sends a request and decodes a 2xx JSON answer into out (a
// *bytes.Buffer receives the raw body). Non-2xx answers become *APIError,
// 404 on a key also ErrNotFound.
func (c *Client) do(ctx context.Context, method, path string, q url.Values, h http.Header, body []byte, out any) error {
	resp, err := c.send(ctx, method, path, q, h, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if buf, ok := out.(*bytes.Buffer); ok {
		_, err := buf.ReadFrom(resp.Body)
		return err
	}
	if out == nil {
		io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("client: %s %s: bad JSON answer: %w", method, path, err)
	}
	return nil
}

func (c *Client) send(ctx context.Context, method, path string, q url.Values, h http.Header, body []byte) (*http.Response, error) {
	u := c.base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	for k, v := range h {
		req.Header[k] = v
	}
	if body != nil {
		req.ContentLength = int64(len(body))
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if isConnError(err) {
			return nil, fmt.Errorf("%w at %s: %v", ErrUnreachable, c.base, rootCause(err))
		}
		return nil, fmt.Errorf("client: %s %s: %w", method, path, err)
	}
	if resp.StatusCode/100 == 2 || (resp.StatusCode == http.StatusMultipleChoices && method == http.MethodGet) {
		return resp, nil
	}
	defer resp.Body.Close()
	return nil, decodeError(resp, path)
}

func decodeError(resp *http.Response, path string) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var eb ErrorBody
	msg := strings.TrimSpace(string(b))
	if json.Unmarshal(b, &eb) == nil && eb.Error != "" {
		msg = eb.Error
	} else {
		var st struct{ Reason string }
		if json.Unmarshal(b, &st) == nil && st.Reason != "" {
			msg = st.Reason
		}
	}
	ae := &APIError{Status: resp.StatusCode, Message: msg, Header: resp.Header}
	if resp.StatusCode == http.StatusNotFound && (strings.HasPrefix(path, "/v1/kv/")) {
		return notFound(ae)
	}
	return ae
}

func isConnError(err error) bool {
	var ne *net.OpError
	return errors.As(err, &ne) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET)
}

func rootCause(err error) error {
	for {
		u := errors.Unwrap(err)
		if u == nil {
			return err
		}
		err = u
	}
}
