package daemon

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	"github.com/libp2p/go-libp2p/p2p/protocol/identify"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ringkv/ringkv/dht"
	"github.com/ringkv/ringkv/dht/antientropy"
	"github.com/ringkv/ringkv/dht/membership"
	"github.com/ringkv/ringkv/dht/replica"
	"github.com/ringkv/ringkv/dht/routing"
)

// ErrNotRingkv: a bootstrap peer answered but speaks no ringkv protocol.
var ErrNotRingkv = errors.New("not a ringkv node")

// newHost builds the libp2p host: the node's identity, its listen
// addresses, TCP and QUIC, no relays, metrics into the daemon's registry.
func newHost(priv crypto.PrivKey, listen []string, reg prometheus.Registerer) (host.Host, error) {
	rm, err := resourceManager()
	if err != nil {
		return nil, err
	}
	h, err := libp2p.New(
		libp2p.ResourceManager(rm),
		libp2p.Identity(priv),
		libp2p.ListenAddrStrings(listen...),
		libp2p.DisableRelay(),
		libp2p.UserAgent("ringkv/"+Version),
		libp2p.PrometheusRegisterer(reg),
		libp2p.WithDialTimeout(10*time.Second),
	)
	if err != nil {
		return nil, fmt.Errorf("daemon: start libp2p on %v: %w", listen, err)
	}
	return h, nil
}

// peerProtocols are ringkv's stream protocols. Streams are reused, but a
// busy peer still keeps many open at once (one per call in flight), so
// their per-peer limits are raised well above libp2p's defaults (64).
var peerProtocols = []dht.Protocol{
	membership.ProtocolSWIM, membership.ProtocolPushPull, routing.Protocol, replica.Protocol, antientropy.Protocol,
}

// resourceManager is libp2p's default resource manager, scaled to the
// machine, with room for ringkv's protocols.
func resourceManager() (network.ResourceManager, error) {
	limits := rcmgr.DefaultLimits
	libp2p.SetDefaultServiceLimits(&limits)
	limits.PeerBaseLimit.Streams = max(limits.PeerBaseLimit.Streams, 4096)
	limits.PeerBaseLimit.StreamsInbound = max(limits.PeerBaseLimit.StreamsInbound, 2048)
	limits.PeerBaseLimit.StreamsOutbound = max(limits.PeerBaseLimit.StreamsOutbound, 2048)
	limits.PeerBaseLimit.Memory = max(limits.PeerBaseLimit.Memory, 256<<20)
	for _, p := range peerProtocols {
		limits.AddProtocolPeerLimit(protocol.ID(p),
			rcmgr.BaseLimit{Streams: 2048, StreamsInbound: 1024, StreamsOutbound: 1024, Memory: 128 << 20},
			rcmgr.BaseLimitIncrease{})
		limits.AddProtocolLimit(protocol.ID(p),
			rcmgr.BaseLimit{Streams: 16384, StreamsInbound: 8192, StreamsOutbound: 8192, Memory: 512 << 20},
			rcmgr.BaseLimitIncrease{})
	}
	rm, err := rcmgr.NewResourceManager(rcmgr.NewFixedLimiter(limits.AutoScale()))
	if err != nil {
		return nil, fmt.Errorf("daemon: libp2p resource manager: %w", err)
	}
	return rm, nil
}

// dialableAddrs returns the host's addresses with /p2p/<id>, the form other
// nodes put in --bootstrap.
func dialableAddrs(h host.Host) []string {
	info := peer.AddrInfo{ID: h.ID(), Addrs: h.Addrs()}
	mas, err := peer.AddrInfoToP2pAddrs(&info)
	if err != nil {
		return nil
	}
	out := make([]string, len(mas))
	for i, m := range mas {
		out[i] = m.String()
	}
	return out
}

// bootstrapDialer connects to a bootstrap peer, checks that it is a ringkv
// node, and joins the cluster through it.
type bootstrapDialer struct {
	h    host.Host
	join func(ctx context.Context, id peer.ID) error
}

func (b bootstrapDialer) Connect(ctx context.Context, ai peer.AddrInfo) error {
	if ai.ID == b.h.ID() {
		return nil
	}
	if err := b.h.Connect(ctx, ai); err != nil {
		return err
	}
	if err := waitIdentify(ctx, b.h, ai.ID); err != nil {
		return err
	}
	proto, err := b.h.Peerstore().SupportsProtocols(ai.ID, protocol.ID(membership.ProtocolPushPull))
	if err != nil {
		return err
	}
	if len(proto) == 0 {
		return fmt.Errorf("%w: %s does not speak %s; check the address", ErrNotRingkv, ai.ID, membership.ProtocolPushPull)
	}
	return b.join(ctx, ai.ID)
}

// waitIdentify waits until identify finished on a connection to id, so the
// peer's protocols are known.
func waitIdentify(ctx context.Context, h host.Host, id peer.ID) error {
	withIDs, ok := h.(interface{ IDService() identify.IDService })
	if !ok {
		return nil
	}
	for _, c := range h.Network().ConnsToPeer(id) {
		select {
		case <-withIDs.IDService().IdentifyWait(c):
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return fmt.Errorf("no connection to %s", id)
}

// connectedPeers lists peers with at least one open connection.
func connectedPeers(h host.Host) []peer.ID {
	var out []peer.ID
	for _, p := range h.Network().Peers() {
		if h.Network().Connectedness(p) == network.Connected {
			out = append(out, p)
		}
	}
	return out
}
