package cli

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/ringkv/ringkv/daemon"
)

func newDevCmd(g *globals) *cobra.Command {
	var (
		nodes, zones int
		verbose      bool
	)
	c := &cobra.Command{
		Use:   "dev",
		Short: "Run a local cluster of N nodes in one process, ready for `ringkv put`/`get`",
		Long: "Run N daemons in this process on loopback, each with a temporary data dir, node 2..N\n" +
			"bootstrapping from node 1. Node 1's API address is written to <data-dir>/api, where the\n" +
			"CLI looks by default, so `ringkv put k v` and `ringkv get k` work at once from another\n" +
			"terminal. Ctrl-C stops the cluster and deletes its data.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			base, err := daemon.Load(cmd.Flags(), g.environ)
			if err != nil {
				return err
			}
			logw := io.Discard
			if verbose {
				logw = g.stderr
			}
			cfg := daemon.DevConfig{Nodes: nodes, Zones: zones, DataDir: base.DataDir, Base: base, Log: logw}
			return daemon.RunDev(cmd.Context(), cfg, func(dc *daemon.DevCluster) {
				fmt.Fprintf(g.stdout, "ringkv dev cluster: %d nodes ready (N=%d W=%d R=%d)\n", len(dc.Daemons), base.Replicas, base.WriteQuorum, base.ReadQuorum)
				for i, d := range dc.Daemons {
					fmt.Fprintf(g.stdout, "  node %d  api %s  peer %s\n", i+1, d.APIAddr(), d.PeerID())
				}
				fmt.Fprintf(g.stdout, "the CLI now talks to node 1; try: ringkv put hello world && ringkv get hello\n")
				fmt.Fprintf(g.stdout, "press Ctrl-C to stop\n")
			})
		},
	}
	c.Flags().IntVar(&nodes, "nodes", 3, "number of nodes")
	c.Flags().IntVar(&zones, "zones", 3, "spread the nodes over this many zones")
	c.Flags().BoolVarP(&verbose, "verbose", "v", false, "print the nodes' logs")
	daemon.RegisterFlags(c.Flags(), "replicas", "write_quorum", "read_quorum", "conflicts", "sync", "log_level", "log_format")
	return c
}
