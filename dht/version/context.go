package version

import (
	"cmp"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/cespare/xxhash/v2"

	"github.com/ringkv/ringkv/dht"
)

// Errors returned by this package. Callers test for them with errors.Is.
var (
	// ErrBadContext: a client passed a causal context string that does not
	// decode. The message is meant for the end user.
	ErrBadContext = errors.New("version: malformed causal context: pass the context returned by get unchanged")
)

// Bounds on contexts.
const (
	// MaxActors is the default bound Prune applies to a record's context.
	// A key is written by its N replicas and, during failures, by a few
	// fallback nodes, so 64 actors leaves ample room; a larger bound keeps
	// more history (fewer false siblings) at the cost of bigger records and
	// context strings.
	MaxActors = 64
	// MaxContextEntries is the most entries a client context string may
	// carry. EncodeContext drops the entries with the smallest counters
	// beyond it, which can only create false siblings.
	MaxContextEntries = 1000
	// MaxContextLen is the longest context string DecodeContext accepts, in
	// bytes. It fits MaxContextEntries entries with counters of any size
	// (at most 17 bytes each before base64) and rejects anything larger
	// before decoding it.
	MaxContextLen = 24 << 10
	// MaxCounter is the largest counter a client context may carry. No key
	// sees 2^62 writes, and the bound keeps a forged context from pushing a
	// counter to 2^64-1, where Update can no longer issue a fresh dot.
	// EncodeContext lowers larger counters (which only corrupt peer data can
	// hold) to it; a context that claims less can only create false siblings.
	MaxCounter = 1 << 62
)

// contextFormat is the first byte of an encoded context. Bump it when the
// layout changes; DecodeContext rejects unknown formats.
const contextFormat = 1

// contextSumLen is the length of the trailing checksum, which catches
// truncated or edited strings.
const contextSumLen = 4

// minEntryLen is the smallest encoding of one entry: an 8-byte actor and a
// one-byte counter.
const minEntryLen = 9

var contextEncoding = base64.RawURLEncoding.Strict()

// EncodeContext encodes a causal context as an opaque, URL-safe string to
// hand to clients. The encoding is canonical: equal contexts give equal
// strings. An empty context encodes to "". Layout before base64 (raw URL
// alphabet, no padding): format byte, uvarint entry count, per entry the
// actor as 8 bytes big-endian and the counter (at most MaxCounter) as a
// uvarint, in ascending actor order, then the first 4 bytes of the xxhash64
// of all that.
func EncodeContext(ctx []dht.Dot) string {
	c := canonContext(ctx, nil)
	if len(c) == 0 {
		return ""
	}
	if len(c) > MaxContextEntries {
		c = dropSmallest(c, len(c)-MaxContextEntries, nil)
	}
	b := make([]byte, 0, 1+binary.MaxVarintLen64+len(c)*(8+binary.MaxVarintLen64)+contextSumLen)
	b = append(b, contextFormat)
	b = binary.AppendUvarint(b, uint64(len(c)))
	for _, d := range c {
		b = binary.BigEndian.AppendUint64(b, d.Actor)
		b = binary.AppendUvarint(b, min(d.Counter, MaxCounter))
	}
	b = binary.BigEndian.AppendUint32(b, uint32(xxhash.Sum64(b)>>32))
	return contextEncoding.EncodeToString(b)
}

// DecodeContext decodes a string made by EncodeContext. The empty string is
// the empty context. Anything else that EncodeContext could not have
// produced (bad base64, unknown format, bad checksum, too many entries,
// entries out of order or repeated, counters of 0 or above MaxCounter,
// trailing bytes, longer than MaxContextLen) fails with an error wrapping ErrBadContext.
func DecodeContext(s string) ([]dht.Dot, error) {
	if s == "" {
		return nil, nil
	}
	if len(s) > MaxContextLen {
		return nil, badContext("%d bytes, limit %d", len(s), MaxContextLen)
	}
	b, err := contextEncoding.DecodeString(s)
	if err != nil {
		return nil, badContext("not base64url")
	}
	if len(b) < 1+1+contextSumLen {
		return nil, badContext("too short")
	}
	body, sum := b[:len(b)-contextSumLen], b[len(b)-contextSumLen:]
	if binary.BigEndian.Uint32(sum) != uint32(xxhash.Sum64(body)>>32) {
		return nil, badContext("checksum mismatch")
	}
	if body[0] != contextFormat {
		return nil, badContext("unknown format %d", body[0])
	}
	dots, err := decodeEntries(body[1:])
	if err != nil {
		return nil, err
	}
	if EncodeContext(dots) != s {
		return nil, badContext("not in canonical form")
	}
	return dots, nil
}

// decodeEntries parses the entry count and entries of an encoded context.
func decodeEntries(b []byte) ([]dht.Dot, error) {
	n, k := binary.Uvarint(b)
	if k <= 0 {
		return nil, badContext("bad entry count")
	}
	b = b[k:]
	if n == 0 || n > MaxContextEntries {
		return nil, badContext("%d entries, want 1 to %d", n, MaxContextEntries)
	}
	if n > uint64(len(b)/minEntryLen) {
		return nil, badContext("%d entries in %d bytes", n, len(b))
	}
	dots := make([]dht.Dot, 0, n)
	for i := uint64(0); i < n; i++ {
		if len(b) < minEntryLen {
			return nil, badContext("truncated at entry %d", i)
		}
		actor := binary.BigEndian.Uint64(b)
		counter, k := binary.Uvarint(b[8:])
		if k <= 0 {
			return nil, badContext("bad counter at entry %d", i)
		}
		b = b[8+k:]
		if counter == 0 || counter > MaxCounter {
			return nil, badContext("counter %d at entry %d", counter, i)
		}
		if i > 0 && actor <= dots[i-1].Actor {
			return nil, badContext("actors out of order or repeated at entry %d", i)
		}
		dots = append(dots, dht.Dot{Actor: actor, Counter: counter})
	}
	if len(b) != 0 {
		return nil, badContext("%d trailing bytes", len(b))
	}
	return dots, nil
}

func badContext(format string, args ...any) error {
	return fmt.Errorf("%w (%s)", ErrBadContext, fmt.Sprintf(format, args...))
}

// Prune bounds r's context to max entries (MaxActors when max <= 0) and
// returns r in canonical form. When the context is larger, it drops the
// entries with the smallest counters among actors that have no current
// sibling and are not listed in keep, until the bound is met or no such
// entry is left.
//
// Pruning can only create false siblings, never lose a write: no sibling is
// removed, and every sibling stays covered by the context. The record merely
// forgets that it saw some overwritten writes, so a replica still holding
// one of them makes it reappear as a sibling next to its successor, until a
// client writes over both. keep should name the actors that may coordinate
// writes on this key (its preference list): an actor whose own entry was
// pruned would restart its counter and could reissue a dot that a stale
// replica still holds.
func Prune(r dht.Record, max int, keep ...uint64) dht.Record {
	c := Canonical(r)
	if max <= 0 {
		max = MaxActors
	}
	if len(c.Context) <= max {
		return c
	}
	protected := make(map[uint64]bool, len(c.Versions)+len(keep))
	for _, v := range c.Versions {
		protected[v.Dot.Actor] = true
	}
	for _, a := range keep {
		protected[a] = true
	}
	c.Context = dropSmallest(c.Context, len(c.Context)-max, protected)
	return c
}

// dropSmallest removes up to n entries with the smallest counters (ties by
// actor) from a canonical context, skipping protected actors, and returns a
// new canonical context.
func dropSmallest(ctx []dht.Dot, n int, protected map[uint64]bool) []dht.Dot {
	cand := make([]dht.Dot, 0, len(ctx))
	for _, d := range ctx {
		if !protected[d.Actor] {
			cand = append(cand, d)
		}
	}
	slices.SortFunc(cand, func(x, y dht.Dot) int {
		if c := cmp.Compare(x.Counter, y.Counter); c != 0 {
			return c
		}
		return cmp.Compare(x.Actor, y.Actor)
	})
	drop := make(map[uint64]bool, n)
	for _, d := range cand[:min(n, len(cand))] {
		drop[d.Actor] = true
	}
	out := make([]dht.Dot, 0, len(ctx)-len(drop))
	for _, d := range ctx {
		if !drop[d.Actor] {
			out = append(out, d)
		}
	}
	return out
}

// canonContext returns a new context holding ctx and the dots of vs, sorted
// by actor, one entry per actor with its highest counter, zero counters
// removed; nil when empty.
func canonContext(ctx []dht.Dot, vs []dht.Version) []dht.Dot {
	if len(ctx) == 0 && len(vs) == 0 {
		return nil
	}
	out := make([]dht.Dot, 0, len(ctx)+len(vs))
	out = append(out, ctx...)
	for _, v := range vs {
		out = append(out, v.Dot)
	}
	slices.SortFunc(out, cmpDot)
	n := 0
	for _, d := range out {
		switch {
		case d.Counter == 0:
		case n > 0 && out[n-1].Actor == d.Actor:
			out[n-1] = d // sorted by counter within an actor: d is higher
		default:
			out[n] = d
			n++
		}
	}
	if n == 0 {
		return nil
	}
	return out[:n]
}

// joinContext returns the pointwise maximum of two canonical contexts.
func joinContext(a, b []dht.Dot) []dht.Dot {
	if len(a) == 0 && len(b) == 0 {
		return nil
	}
	out := make([]dht.Dot, 0, len(a)+len(b))
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case j == len(b) || (i < len(a) && a[i].Actor < b[j].Actor):
			out = append(out, a[i])
			i++
		case i == len(a) || b[j].Actor < a[i].Actor:
			out = append(out, b[j])
			j++
		default:
			out = append(out, dht.Dot{Actor: a[i].Actor, Counter: max(a[i].Counter, b[j].Counter)})
			i++
			j++
		}
	}
	return out
}

// counterOf returns the counter of actor in a canonical context, 0 if absent.
func counterOf(ctx []dht.Dot, actor uint64) uint64 {
	i, ok := slices.BinarySearchFunc(ctx, actor, func(d dht.Dot, a uint64) int { return cmp.Compare(d.Actor, a) })
	if !ok {
		return 0
	}
	return ctx[i].Counter
}

// covered reports whether canonical context ctx covers dot d.
func covered(ctx []dht.Dot, d dht.Dot) bool {
	return d.Counter <= counterOf(ctx, d.Actor)
}
