package bootstrap

import (
	"errors"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// testID returns a valid Ed25519 peer ID derived deterministically from
// seed, so fuzz seeds and golden strings are stable across runs.
func testID(tb testing.TB, seed uint64) peer.ID {
	tb.Helper()
	var key [32]byte
	key[0] = byte(seed)
	key[1] = byte(seed >> 8)
	_, pub, err := crypto.GenerateEd25519Key(rand.NewChaCha8(key))
	if err != nil {
		tb.Fatalf("generate key: %v", err)
	}
	id, err := peer.IDFromPublicKey(pub)
	if err != nil {
		tb.Fatalf("peer ID: %v", err)
	}
	return id
}

func TestParse(t *testing.T) {
	id := testID(t, 1).String()
	tests := []struct {
		name      string
		in        string
		wantAddr  string // transport part on success
		wantErrIn string // substring of the error; "" means success
	}{
		{"tcp", "/ip4/10.0.0.1/tcp/7600/p2p/" + id, "/ip4/10.0.0.1/tcp/7600", ""},
		{"quic-v1", "/ip4/10.0.0.1/udp/7600/quic-v1/p2p/" + id, "/ip4/10.0.0.1/udp/7600/quic-v1", ""},
		{"dns4", "/dns4/node1/tcp/7600/p2p/" + id, "/dns4/node1/tcp/7600", ""},
		{"ip6", "/ip6/fd00::1/tcp/7600/p2p/" + id, "/ip6/fd00::1/tcp/7600", ""},
		{"legacy ipfs name", "/ip4/10.0.0.1/tcp/7600/ipfs/" + id, "/ip4/10.0.0.1/tcp/7600", ""},
		{"whitespace trimmed", "  \t/ip4/10.0.0.1/tcp/7600/p2p/" + id + "\n", "/ip4/10.0.0.1/tcp/7600", ""},
		{"relay", "/ip4/10.0.0.2/tcp/7600/p2p/" + testID(t, 2).String() + "/p2p-circuit/p2p/" + id,
			"/ip4/10.0.0.2/tcp/7600/p2p/" + testID(t, 2).String() + "/p2p-circuit", ""},
		{"empty", "", "", "is empty"},
		{"blank", "   ", "", "is empty"},
		{"garbage", "garbage", "", "is not a valid multiaddr (must begin with /)"},
		{"unknown protocol", "/foo/1/p2p/" + id, "", "is not a valid multiaddr"},
		{"bad ip", "/ip4/999.0.0.1/tcp/7600/p2p/" + id, "", "is not a valid multiaddr"},
		{"no p2p", "/ip4/1.2.3.4/tcp/7600", "", `"/ip4/1.2.3.4/tcp/7600" has no /p2p/<peer ID> at the end: append the peer's ID`},
		{"p2p not last", "/ip4/1.2.3.4/tcp/7600/p2p/" + id + "/p2p-circuit", "", "has no /p2p/<peer ID> at the end"},
		{"bad peer ID", "/ip4/1.2.3.4/tcp/7600/p2p/notanid", "", `has a bad peer ID "notanid"`},
		{"bad legacy peer ID", "/ip4/1.2.3.4/tcp/7600/ipfs/xyz", "", `has a bad peer ID "xyz"`},
		{"empty peer ID", "/ip4/1.2.3.4/tcp/7600/p2p/", "", `has a bad peer ID ""`},
		{"invalid UTF-8", "/dns4/\xae/tcp/7600/p2p/" + id, "", "is not valid UTF-8"},
		{"only p2p", "/p2p/" + id, "", "has no transport address before /p2p/"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ai, err := Parse(tt.in)
			if tt.wantErrIn != "" {
				if err == nil {
					t.Fatalf("Parse(%q) = %v, want error containing %q", tt.in, ai, tt.wantErrIn)
				}
				if !errors.Is(err, ErrInvalidAddr) {
					t.Errorf("error %v does not wrap ErrInvalidAddr", err)
				}
				msg := err.Error()
				if !strings.Contains(msg, tt.wantErrIn) || !strings.HasPrefix(msg, "bootstrap: ") || strings.Contains(msg, "\n") {
					t.Errorf("error %q: want one line starting with \"bootstrap: \" containing %q", msg, tt.wantErrIn)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.in, err)
			}
			if ai.ID.String() != id {
				t.Errorf("ID = %s, want %s", ai.ID, id)
			}
			if len(ai.Addrs) != 1 || ai.Addrs[0].String() != tt.wantAddr {
				t.Errorf("Addrs = %v, want [%s]", ai.Addrs, tt.wantAddr)
			}
		})
	}
}

func TestParseList(t *testing.T) {
	a, b := testID(t, 1).String(), testID(t, 2).String()
	tests := []struct {
		name      string
		in        []string
		want      map[string][]string // peer -> transport addrs
		wantOrder []string
		wantErrIn string
	}{
		{name: "nil", in: nil, want: map[string][]string{}},
		{
			name: "merges one peer's addresses in order",
			in: []string{
				"/ip4/10.0.0.1/tcp/7600/p2p/" + a,
				"/ip4/10.0.0.2/tcp/7600/p2p/" + b,
				"/ip4/10.0.0.1/udp/7600/quic-v1/p2p/" + a,
				"/ip4/10.0.0.1/tcp/7600/ipfs/" + a, // duplicate, other spelling
			},
			want: map[string][]string{
				a: {"/ip4/10.0.0.1/tcp/7600", "/ip4/10.0.0.1/udp/7600/quic-v1"},
				b: {"/ip4/10.0.0.2/tcp/7600"},
			},
			wantOrder: []string{a, b},
		},
		{
			name:      "reports the first bad entry",
			in:        []string{"/ip4/10.0.0.1/tcp/7600/p2p/" + a, "/ip4/10.0.0.9/tcp/1", ""},
			wantErrIn: `entry 2: bootstrap: "/ip4/10.0.0.9/tcp/1" has no /p2p/`,
		},
		{name: "empty string", in: []string{""}, wantErrIn: "entry 1: bootstrap: \"\" is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseList(tt.in)
			if tt.wantErrIn != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErrIn) || !errors.Is(err, ErrInvalidAddr) {
					t.Fatalf("ParseList error = %v, want ErrInvalidAddr containing %q", err, tt.wantErrIn)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseList: %v", err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %d peers, want %d: %v", len(got), len(tt.want), got)
			}
			for i, ai := range got {
				if tt.wantOrder != nil && ai.ID.String() != tt.wantOrder[i] {
					t.Errorf("peer %d = %s, want %s", i, ai.ID, tt.wantOrder[i])
				}
				want := tt.want[ai.ID.String()]
				if len(ai.Addrs) != len(want) {
					t.Fatalf("peer %s addrs = %v, want %v", ai.ID, ai.Addrs, want)
				}
				for k := range want {
					if ai.Addrs[k].String() != want[k] {
						t.Errorf("peer %s addr %d = %s, want %s", ai.ID, k, ai.Addrs[k], want[k])
					}
				}
			}
		})
	}
}

func TestCanonical(t *testing.T) {
	id := testID(t, 1).String()
	tests := []struct{ in, want string }{
		{"/ip4/1.2.3.4/tcp/1/ipfs/" + id, "/ip4/1.2.3.4/tcp/1/p2p/" + id},
		{" /ip4/1.2.3.4/tcp/1/p2p/" + id + "/ ", "/ip4/1.2.3.4/tcp/1/p2p/" + id},
		{"  not an addr ", "not an addr"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := Canonical(tt.in); got != tt.want {
			t.Errorf("Canonical(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// FuzzParse checks that Parse never panics, that every error is a
// one-line ErrInvalidAddr, and that accepted addresses round-trip.
func FuzzParse(f *testing.F) {
	id := testID(f, 1).String()
	seeds := []string{
		"/ip4/10.0.0.1/tcp/7600/p2p/" + id,
		"/ip4/10.0.0.1/udp/7600/quic-v1/p2p/" + id,
		"/dns4/node1/tcp/7600/p2p/" + id,
		"/ip6/::1/tcp/7600/p2p/" + id,
		"/ip4/10.0.0.1/tcp/7600/ipfs/QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N",
		"/ip4/10.0.0.2/tcp/7600/p2p/" + testID(f, 2).String() + "/p2p-circuit/p2p/" + id,
		"/p2p/" + id,
		"/ip4/1.2.3.4/tcp/7600",
		"/ip4/1.2.3.4/tcp/7600/p2p/xyz",
		"/ip4/1.2.3.4/tcp/7600/p2p/",
		"",
		"/",
		"garbage",
		"/ip4/999.1.1.1/tcp/1/p2p/" + id,
		"/dns4/a\nb/tcp/1/p2p/" + id,
		"/unix/tmp/sock/p2p/" + id,
	}
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ai, err := Parse(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidAddr) {
				t.Fatalf("Parse(%q) error %v does not wrap ErrInvalidAddr", s, err)
			}
			if msg := err.Error(); strings.ContainsAny(msg, "\r\n") {
				t.Fatalf("Parse(%q) error is not one line: %q", s, msg)
			}
			return
		}
		if ai.ID == "" || len(ai.Addrs) != 1 || len(ai.Addrs[0]) == 0 {
			t.Fatalf("Parse(%q) = %+v: want an ID and one transport address", s, ai)
		}
		full := ai.Addrs[0].Encapsulate(ma.StringCast("/p2p/" + ai.ID.String()))
		again, err := Parse(full.String())
		if err != nil || again.ID != ai.ID || !again.Addrs[0].Equal(ai.Addrs[0]) {
			t.Fatalf("round trip of %q via %q = %+v, %v", s, full, again, err)
		}
	})
}
