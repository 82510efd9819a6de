package bootstrap

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// Errors callers can test for with errors.Is. Each returned error carries a
// one-line message that names the input, says what is wrong and what to do;
// the sentinel only classifies it.
var (
	// ErrInvalidAddr: a bootstrap address is not a dialable
	// /<transport>/.../p2p/<peer ID> multiaddr.
	ErrInvalidAddr = errors.New("bootstrap: invalid bootstrap address")
	// ErrInvalidConfig: the config file is not valid TOML, or its bootstrap
	// key is not an array of strings. The file was not changed.
	ErrInvalidConfig = errors.New("bootstrap: invalid config file")
	// ErrInvalidPeer: a peer handed to the Joiner has an empty peer ID.
	ErrInvalidPeer = errors.New("bootstrap: invalid peer")
	// ErrClosed: the Joiner was used after Close.
	ErrClosed = errors.New("bootstrap: joiner closed")
	// ErrStarted: Start was called twice.
	ErrStarted = errors.New("bootstrap: joiner already started")
)

// AddrError describes one bad bootstrap address. It unwraps to
// ErrInvalidAddr.
type AddrError struct {
	Addr    string // the address as given (trimmed)
	Problem string // what is wrong, e.g. "has no /p2p/<peer ID>"
	Hint    string // what to do about it
}

func (e *AddrError) Error() string {
	return fmt.Sprintf("bootstrap: %q %s: %s", e.Addr, e.Problem, e.Hint)
}

// Unwrap makes errors.Is(err, ErrInvalidAddr) hold.
func (e *AddrError) Unwrap() error { return ErrInvalidAddr }

// Hints shared by several errors.
const (
	hintShape = "write it as /ip4/<host>/tcp/<port>/p2p/<peer ID> (or /dns4/<name>/..., /ip6/..., /udp/<port>/quic-v1)"
	hintID    = "copy the ID exactly as `ringkv id` prints it on that node"
)

// p2pMarkers are the textual forms of the /p2p/ component. /ipfs/ is its
// legacy name; the multiaddr library accepts both and prints /p2p/.
var p2pMarkers = []string{"/p2p/", "/ipfs/"}

// Parse parses one bootstrap address: a multiaddr that ends in
// /p2p/<peer ID> and has a transport part before it, such as
// /ip4/10.0.0.1/tcp/7600/p2p/12D3KooW... or
// /dns4/node1/udp/7600/quic-v1/p2p/12D3KooW....
//
// Surrounding whitespace is trimmed. A bare /p2p/<peer ID> is rejected: the
// joiner has no other way to learn where that peer listens. Relay addresses
// (.../p2p/<relay>/p2p-circuit/p2p/<peer>) are accepted. Every error is an
// *AddrError wrapping ErrInvalidAddr.
func Parse(s string) (peer.AddrInfo, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return peer.AddrInfo{}, &AddrError{Addr: s, Problem: "is empty", Hint: hintShape}
	}
	if !utf8.ValidString(s) {
		return peer.AddrInfo{}, &AddrError{Addr: s, Problem: "is not valid UTF-8", Hint: hintShape}
	}
	m, err := ma.NewMultiaddr(s)
	if err != nil {
		return peer.AddrInfo{}, diagnose(s, err)
	}
	transport, last := ma.SplitLast(m)
	if last == nil || last.Code() != ma.P_P2P {
		return peer.AddrInfo{}, &AddrError{
			Addr:    s,
			Problem: "has no /p2p/<peer ID> at the end",
			Hint:    "append the peer's ID (`ringkv id` prints it on that node)",
		}
	}
	id := peer.ID(last.RawValue()) // validated by the multiaddr parser
	if len(transport) == 0 {
		return peer.AddrInfo{}, &AddrError{
			Addr:    s,
			Problem: "has no transport address before /p2p/",
			Hint:    "prefix it with where the peer listens, e.g. /ip4/<host>/tcp/<port>",
		}
	}
	return peer.AddrInfo{ID: id, Addrs: []ma.Multiaddr{transport}}, nil
}

// diagnose turns a multiaddr syntax error into an AddrError, singling out
// the common case of a mistyped peer ID after a well-formed transport.
func diagnose(s string, err error) error {
	for _, marker := range p2pMarkers {
		i := strings.LastIndex(s, marker)
		if i < 0 {
			continue
		}
		id, _, _ := strings.Cut(s[i+len(marker):], "/")
		prefixOK := i == 0
		if !prefixOK {
			_, perr := ma.NewMultiaddr(s[:i])
			prefixOK = perr == nil
		}
		if _, derr := peer.Decode(id); prefixOK && derr != nil {
			return &AddrError{
				Addr:    s,
				Problem: fmt.Sprintf("has a bad peer ID %q (%s)", id, oneLine(derr.Error())),
				Hint:    hintID,
			}
		}
		break
	}
	return &AddrError{
		Addr:    s,
		Problem: "is not a valid multiaddr (" + multiaddrCause(err) + ")",
		Hint:    hintShape,
	}
}

// multiaddrCause strips the library's `failed to parse multiaddr "...":`
// preamble, which would repeat the address, and keeps the rest on one line.
func multiaddrCause(err error) string {
	msg := err.Error()
	const pre = "failed to parse multiaddr "
	if rest, ok := strings.CutPrefix(msg, pre); ok {
		if _, cause, ok := strings.Cut(rest, `": `); ok {
			msg = cause
		}
	}
	return oneLine(msg)
}

// oneLine escapes control characters (which may come from the input) so a
// message stays on one line.
func oneLine(s string) string {
	if !strings.ContainsFunc(s, unicode.IsControl) {
		return s
	}
	q := strconv.Quote(s)
	return q[1 : len(q)-1]
}

// ParseList parses many bootstrap addresses. Addresses of the same peer are
// merged into one AddrInfo (duplicates dropped); peers keep the order in
// which they first appear. The first bad address fails the whole list, and
// the error names it and its position.
func ParseList(addrs []string) ([]peer.AddrInfo, error) {
	out := make([]peer.AddrInfo, 0, len(addrs))
	index := make(map[peer.ID]int, len(addrs))
	for i, s := range addrs {
		ai, err := Parse(s)
		if err != nil {
			return nil, fmt.Errorf("entry %d: %w", i+1, err)
		}
		out = mergeInto(out, index, ai)
	}
	return out, nil
}

// mergeInto adds ai to infos, merging it with an earlier entry of the same
// peer. index maps peer IDs to positions in infos and is updated.
func mergeInto(infos []peer.AddrInfo, index map[peer.ID]int, ai peer.AddrInfo) []peer.AddrInfo {
	j, seen := index[ai.ID]
	if !seen {
		index[ai.ID] = len(infos)
		addrs := make([]ma.Multiaddr, 0, len(ai.Addrs))
		for _, a := range ai.Addrs {
			if !ma.Contains(addrs, a) {
				addrs = append(addrs, a)
			}
		}
		return append(infos, peer.AddrInfo{ID: ai.ID, Addrs: addrs})
	}
	for _, a := range ai.Addrs {
		if !ma.Contains(infos[j].Addrs, a) {
			infos[j].Addrs = append(infos[j].Addrs, a)
		}
	}
	return infos
}

// Canonical returns the address in the multiaddr library's canonical
// spelling (for example /ipfs/ becomes /p2p/ and a trailing slash goes), so
// two spellings of one address compare equal. It returns the trimmed input
// when s does not parse.
func Canonical(s string) string {
	s = strings.TrimSpace(s)
	m, err := ma.NewMultiaddr(s)
	if err != nil {
		return s
	}
	return m.String()
}
