// Package bootstrap gets a ringkv node into its cluster: it parses bootstrap
// addresses, keeps the bootstrap list in the daemon's config file, and dials
// the listed peers until they answer.
//
// # Addresses
//
// A bootstrap address is a libp2p multiaddr with a transport part and a
// trailing /p2p/<peer ID>:
//
//	/ip4/10.0.0.1/tcp/7600/p2p/12D3KooW...
//	/ip6/fd00::1/udp/7600/quic-v1/p2p/12D3KooW...
//	/dns4/node1.example/tcp/7600/p2p/12D3KooW...
//
// The peer ID is required: libp2p authenticates the peer against it, so a
// bootstrap entry cannot be hijacked by whoever answers at that address. A
// bare /p2p/<peer ID> is rejected, since without a DHT of its own a joining
// node has no other way to find where that peer listens. Parse and ParseList
// return errors (*AddrError, wrapping ErrInvalidAddr) of one line that name
// the address, say what is wrong and what to do. ParseList merges several
// addresses of one peer into a single peer.AddrInfo.
//
// # The config file
//
// The list lives under the top-level key `bootstrap` of the daemon's TOML
// config file. ReadFile reads it; Add and Remove edit it for
// `ringkv bootstrap add|rm`. The whole document is validated with go-toml
// first; a syntax error is reported with its line and column and nothing is
// written. The edit is textual and touches only the bytes of the
// `bootstrap = [...]` entry, which is written back as a multi-line array
// with one address per line, so every other line and comment of a
// hand-written file survives byte for byte (comments inside the old array
// do not). Files are replaced atomically (temp file, fsync, rename) with
// their mode kept. Concurrent edits of one file by two processes are not
// serialised: the last writer wins.
//
// # Joining
//
// A Joiner runs one goroutine per bootstrap peer. It dials at Start, then
// after every failure waits Backoff(cfg, failures, rnd): exponential from
// InitialBackoff by Multiplier, capped at MaxBackoff, shortened at random by
// up to Jitter. It retries forever unless MaxAttempts is set. A connected
// peer costs nothing until the daemon, seeing the connection drop, calls
// Reconnect; a connection that dies young is redialled with growing backoff
// so that a peer which keeps closing connections is not hammered. SetPeers
// changes the set at runtime. Status reports every peer for
// `ringkv status`, and WaitConnected serves the daemon's readiness check.
//
// Logging is quiet by design: a peer's first failure in a row is logged at
// warn with its addresses and error, later retries at debug, giving up at
// warn, and a successful connection at info. Keys: peer, addrs, err,
// attempt, retry_in.
//
// Lifecycle: NewJoiner validates and builds, Start launches, Close cancels
// and waits for every goroutine; Close is idempotent. The Dialer must honour
// its context, which carries DialTimeout.
package bootstrap
