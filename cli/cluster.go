package cli

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/ringkv/ringkv/daemon"
	"github.com/ringkv/ringkv/daemon/client"
)

// noArgs builds a command that talks to the daemon and takes no arguments.
func noArgs(use, short string, run func(ctx context.Context, cl *client.Client) error, g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := g.format(); err != nil {
				return err
			}
			cl, err := g.client(1)
			if err != nil {
				return err
			}
			return explain(run(cmd.Context(), cl))
		},
	}
}

func newStatusCmd(g *globals) *cobra.Command {
	return noArgs("status", "Show the node's identity, storage, peers and bootstrap state", func(ctx context.Context, cl *client.Client) error {
		s, err := cl.Status(ctx)
		if err != nil {
			return err
		}
		ready := "yes"
		if !s.Ready {
			ready = "no: " + s.NotReady
		}
		fields := [][2]string{
			{"peer_id", s.PeerID},
			{"zone", s.Zone},
			{"version", s.Version},
			{"uptime", (time.Duration(s.UptimeSeconds) * time.Second).String()},
			{"ready", ready},
			{"keys", strconv.FormatInt(s.Keys, 10)},
			{"bytes_stored", humanBytes(s.BytesStored)},
			{"connected_peers", strconv.Itoa(s.ConnectedPeers)},
			{"members", fmt.Sprintf("%d live of %d", s.LiveMembers, s.Members)},
			{"hints", strconv.FormatInt(s.Hints, 10)},
			{"mean_hops", strconv.FormatFloat(s.MeanHops, 'f', 2, 64)},
			{"replication", fmt.Sprintf("N=%d W=%d R=%d conflicts=%s", s.Replicas, s.WriteQuorum, s.ReadQuorum, s.Conflicts)},
		}
		for _, a := range s.Addrs {
			fields = append(fields, [2]string{"addr", a})
		}
		for _, b := range s.Bootstrap {
			state := "connected"
			if !b.Connected {
				state = fmt.Sprintf("not connected after %d attempts: %s", b.Attempts, b.LastError)
			}
			fields = append(fields, [2]string{"bootstrap " + shortID(b.ID), state})
		}
		return g.emitFields(s, fields)
	}, g)
}

func newPeersCmd(g *globals) *cobra.Command {
	return noArgs("peers", "List connected libp2p peers", func(ctx context.Context, cl *client.Client) error {
		ps, err := cl.Peers(ctx)
		if err != nil {
			return err
		}
		rows := make([][]string, len(ps))
		for i, p := range ps {
			rows[i] = []string{p.ID, strings.Join(p.Addrs, ","), p.Direction, strconv.FormatFloat(p.LatencyMS, 'f', 2, 64), strconv.FormatBool(p.Member)}
		}
		return g.emit(ps, []string{"peer", "addrs", "direction", "latency_ms", "member"}, rows)
	}, g)
}

func newIDCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "id",
		Short: "Print the node's peer ID and its multiaddrs with /p2p/ (what other nodes pass to --bootstrap)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := g.format(); err != nil {
				return err
			}
			type idOut struct {
				ID    string   `json:"id"`
				Addrs []string `json:"addrs"`
			}
			out := idOut{Addrs: []string{}}
			cl, err := g.client(1)
			if err == nil {
				var s client.Status
				if s, err = cl.Status(cmd.Context()); err == nil {
					out.ID, out.Addrs = s.PeerID, s.Addrs
				}
			}
			if err != nil {
				// No daemon: the identity alone still answers "who am I".
				id, idErr := daemon.PeerIDOf(g.resolveDataDir())
				if idErr != nil {
					return explain(err)
				}
				out.ID = id.String()
			}
			rows := [][]string{{out.ID}}
			for _, a := range out.Addrs {
				rows = append(rows, []string{a})
			}
			return g.emit(out, []string{"id / addrs"}, rows)
		},
	}
}

func newMembersCmd(g *globals) *cobra.Command {
	return noArgs("members", "List cluster members as gossip sees them (like nodetool status)", func(ctx context.Context, cl *client.Client) error {
		ms, err := cl.Members(ctx)
		if err != nil {
			return err
		}
		rows := make([][]string, len(ms))
		for i, m := range ms {
			heard := "-"
			if m.Self {
				heard = "self"
			} else if !m.LastHeard.IsZero() {
				heard = time.Since(m.LastHeard).Round(time.Millisecond).String() + " ago"
			}
			rows[i] = []string{m.ID, m.State, m.Zone, strconv.Itoa(m.Tokens), humanBytes(m.StorageUsed), heard, strings.Join(m.Addrs, ",")}
		}
		return g.emit(ms, []string{"peer", "state", "zone", "tokens", "storage", "last heard", "addrs"}, rows)
	}, g)
}

func newRingCmd(g *globals) *cobra.Command {
	return noArgs("ring", "Show each node's share of the ring", func(ctx context.Context, cl *client.Client) error {
		rs, err := cl.Ring(ctx)
		if err != nil {
			return err
		}
		rows := make([][]string, len(rs))
		for i, r := range rs {
			rows[i] = []string{r.ID, r.Zone, r.State, strconv.Itoa(r.Tokens), fmt.Sprintf("%.2f%%", 100*r.Share)}
		}
		return g.emit(rs, []string{"peer", "zone", "state", "tokens", "share"}, rows)
	}, g)
}

func newLocateCmd(g *globals) *cobra.Command {
	var trace, recursive bool
	c := &cobra.Command{
		Use:   "locate KEY",
		Short: "Show a key's owner, replicas and the lookup's hops (--trace: every hop)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := g.format(); err != nil {
				return err
			}
			cl, err := g.client(1)
			if err != nil {
				return err
			}
			loc, err := cl.Locate(cmd.Context(), []byte(args[0]), trace, recursive)
			if err != nil {
				return explain(err)
			}
			fields := [][2]string{{"key", loc.Key}, {"position", loc.Position}, {"owner", loc.Owner},
				{"replicas", strings.Join(loc.Replicas, ",")}, {"hops", strconv.Itoa(loc.Hops)}}
			for i, h := range loc.Path {
				fields = append(fields, [2]string{fmt.Sprintf("hop %d", i+1), fmt.Sprintf("%s %s %.3fms", h.Peer, h.Answer, h.LatencyMS)})
			}
			return g.emitFields(loc, fields)
		},
	}
	c.Flags().BoolVar(&trace, "trace", false, "show every hop of the lookup")
	c.Flags().BoolVar(&recursive, "recursive", false, "route recursively (each hop forwards) instead of iteratively")
	return c
}

func newLeaveCmd(g *globals) *cobra.Command {
	return noArgs("leave", "Hand this node's data to the others, announce the departure and stop the daemon", func(ctx context.Context, cl *client.Client) error {
		if err := cl.Leave(ctx); err != nil {
			return err
		}
		fmt.Fprintln(g.stdout, "left the cluster; the daemon is stopping")
		return nil
	}, g)
}

func newRepairCmd(g *globals) *cobra.Command {
	return noArgs("repair", "Run an anti-entropy round now: compare Merkle trees with the other replicas and exchange what differs", func(ctx context.Context, cl *client.Client) error {
		f, _ := g.format()
		var bar *progressbar.ProgressBar
		final, err := cl.Repair(ctx, func(p client.RepairProgress) {
			if f != formatTable {
				return
			}
			if bar == nil {
				bar = progressbar.NewOptions(p.RangesTotal, progressbar.OptionSetWriter(g.stderr),
					progressbar.OptionSetDescription("repair: ranges"), progressbar.OptionShowCount())
			}
			bar.Set(p.RangesDone)
		})
		if bar != nil {
			bar.Finish()
			fmt.Fprintln(g.stderr)
		}
		if err != nil {
			return err
		}
		return g.emitFields(final, [][2]string{
			{"ranges", fmt.Sprintf("%d/%d", final.RangesDone, final.RangesTotal)},
			{"keys_sent", strconv.FormatInt(final.KeysSent, 10)},
			{"keys_received", strconv.FormatInt(final.KeysRecv, 10)},
			{"bytes", humanBytes(final.Bytes)},
		})
	}, g)
}

func newHealthCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "health",
		Short: "Exit 0 if the daemon is ready to serve, 5 if it answers but is not ready, 3 if unreachable",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := g.client(1)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 5*time.Second)
			defer cancel()
			ok, reason, err := cl.Ready(ctx)
			if err != nil {
				return explain(err)
			}
			if !ok {
				return exitError{ExitNotHealthy, errors.New("not ready: " + reason)}
			}
			fmt.Fprintln(g.stdout, "ready")
			return nil
		},
	}
}
