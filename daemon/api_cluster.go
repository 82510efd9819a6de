package daemon

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ringkv/ringkv/daemon/client"
	"github.com/ringkv/ringkv/dht/node"
)

func (d *Daemon) handleStatus(w http.ResponseWriter, r *http.Request) {
	st := d.node.Stats(r.Context())
	reason := d.notReady()
	s := client.Status{
		PeerID:         d.host.ID().String(),
		Addrs:          dialableAddrs(d.host),
		Zone:           d.cfg.Zone,
		Version:        Version,
		UptimeSeconds:  time.Since(d.started).Seconds(),
		Keys:           int64(d.keys.get()),
		BytesStored:    d.store.Size(),
		ConnectedPeers: len(connectedPeers(d.host)),
		Members:        st.Members,
		LiveMembers:    st.LiveMembers,
		Hints:          st.Hints,
		MeanHops:       st.MeanHops,
		Replicas:       d.cfg.Replicas,
		WriteQuorum:    d.cfg.WriteQuorum,
		ReadQuorum:     d.cfg.ReadQuorum,
		Conflicts:      d.cfg.Conflicts,
		Ready:          reason == "",
		NotReady:       reason,
		Bootstrap:      []client.BootstrapStatus{},
	}
	for _, b := range d.joiner.Status() {
		s.Bootstrap = append(s.Bootstrap, client.BootstrapStatus{
			ID: b.ID.String(), Addrs: b.Addrs, Connected: b.Connected,
			Attempts: b.Attempts, LastError: b.LastError, NextRetry: b.NextRetry,
		})
	}
	writeJSON(w, http.StatusOK, s)
}

func (d *Daemon) handlePeers(w http.ResponseWriter, r *http.Request) {
	members := map[peer.ID]bool{}
	for _, m := range d.node.Members() {
		members[m.ID] = m.State.Live()
	}
	out := []client.Peer{}
	for _, id := range connectedPeers(d.host) {
		p := client.Peer{ID: id.String(), Member: members[id], Addrs: []string{}}
		for _, c := range d.host.Network().ConnsToPeer(id) {
			p.Addrs = append(p.Addrs, c.RemoteMultiaddr().String())
			p.Direction = c.Stat().Direction.String()
		}
		p.LatencyMS = float64(d.host.Peerstore().LatencyEWMA(id)) / 1e6
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	writeJSON(w, http.StatusOK, out)
}

func (d *Daemon) handleMembers(w http.ResponseWriter, r *http.Request) {
	out := []client.Member{}
	self := d.host.ID()
	for _, m := range d.node.Members() {
		out = append(out, client.Member{
			ID: m.ID.String(), Addrs: nonNil(m.Addrs), Zone: m.Zone, State: m.State.String(),
			Capacity: m.Capacity, Tokens: d.node.TokenCount(m.Capacity), StorageUsed: m.StorageUsed,
			Incarnation: m.Incarnation, LastHeard: m.LastHeard, Self: m.ID == self,
		})
	}
	writeJSON(w, http.StatusOK, out)
}

func (d *Daemon) handleRing(w http.ResponseWriter, r *http.Request) {
	out := []client.RingShare{}
	for _, s := range d.node.Ring() {
		out = append(out, client.RingShare{ID: s.ID.String(), Zone: s.Zone, State: s.State.String(), Tokens: s.Tokens, Share: s.Share})
	}
	writeJSON(w, http.StatusOK, out)
}

// handleLeave announces the node's departure, hands its data off, answers,
// and then asks the process to exit.
func (d *Daemon) handleLeave(w http.ResponseWriter, r *http.Request) {
	if err := d.node.Leave(r.Context()); err != nil {
		writeNodeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "left", "peer_id": d.host.ID().String()})
	d.leftOnce.Do(func() { close(d.left) })
}

// handleRepair runs one anti-entropy round now and streams its progress as
// newline-delimited JSON, one client.RepairProgress per line.
func (d *Daemon) handleRepair(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	flusher, _ := w.(http.Flusher)
	send := func(p node.RepairProgress, done bool, err error) {
		line := client.RepairProgress{
			RangesDone: p.RangesDone, RangesTotal: p.RangesTotal, KeysSent: p.KeysSent,
			KeysRecv: p.KeysReceived, Bytes: p.Bytes, Done: done,
		}
		if err != nil {
			line.Error = err.Error()
		}
		enc.Encode(line)
		if flusher != nil {
			flusher.Flush()
		}
	}
	final, err := d.node.Repair(r.Context(), func(p node.RepairProgress) { send(p, false, nil) })
	send(final, true, err)
}

// handleRoots reports this node's Merkle root of every arc it replicates,
// keyed "start-end" in hex: replicas that agree report equal roots.
func (d *Daemon) handleRoots(w http.ResponseWriter, r *http.Request) {
	roots, err := d.node.MerkleRoots(r.Context())
	if err != nil {
		writeNodeError(w, err)
		return
	}
	out := make(map[string]string, len(roots))
	for arc, root := range roots {
		out[fmt.Sprintf("%016x-%016x", arc.Start, arc.End)] = fmt.Sprintf("%016x", root)
	}
	writeJSON(w, http.StatusOK, out)
}

// LocateJSON converts a lookup result to its API form.
func LocateJSON(loc node.Location) client.Location {
	out := client.Location{
		Key:      string(loc.Key),
		Position: fmt.Sprintf("%016x", loc.Position),
		Owner:    idString(loc.Owner),
		Replicas: []string{},
		Hops:     loc.Hops,
	}
	for _, id := range loc.Replicas {
		out.Replicas = append(out.Replicas, id.String())
	}
	for _, h := range loc.Path {
		out.Path = append(out.Path, client.Hop{Peer: h.Peer.String(), Answer: h.Answer, LatencyMS: float64(h.Latency) / 1e6})
	}
	return out
}

func idString(id peer.ID) string {
	if id == "" {
		return ""
	}
	return id.String()
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
