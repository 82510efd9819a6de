package cli

import (
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ringkv/ringkv/bootstrap"
	"github.com/ringkv/ringkv/daemon"
	"github.com/ringkv/ringkv/dht"
)

func newInitCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "init",
		Short: "Create a data dir: commented config.toml, Ed25519 identity, store directory",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			res, err := daemon.Init(g.resolveDataDir())
			if err != nil {
				return err
			}
			return g.emitFields(map[string]any{"data_dir": res.DataDir, "peer_id": res.PeerID.String(), "created": res.Created},
				[][2]string{{"data_dir", res.DataDir}, {"peer_id", res.PeerID.String()}})
		},
	}
}

func newDaemonCmd(g *globals) *cobra.Command {
	var allowStale bool
	c := &cobra.Command{
		Use:   "daemon",
		Short: "Run the ringkv node (initializes the data dir on first run)",
		Long: "Run the ringkv node in the foreground. Every flag can also be set as RINGKV_<NAME>\n" +
			"(e.g. RINGKV_WRITE_QUORUM=3, lists comma-separated) or in <data-dir>/config.toml;\n" +
			"precedence: flags > environment > file > defaults. SIGINT/SIGTERM stop it gracefully;\n" +
			"a second signal forces exit.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := daemon.Load(cmd.Flags(), g.environ)
			if err != nil {
				return err
			}
			opts, err := testClock(g)
			if err != nil {
				return err
			}
			if allowStale {
				opts = append(opts, daemon.AllowStaleRejoin())
			}
			return daemon.Run(cmd.Context(), cfg, opts...)
		},
	}
	daemon.RegisterFlags(c.Flags())
	c.Flags().BoolVar(&allowStale, "allow-stale-rejoin", false,
		"start even though this data dir was last up longer ago than peers keep a dead member\n(keys deleted meanwhile may come back; not saved in config.toml)")
	return c
}

func newBootstrapCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "bootstrap",
		Short: "List or edit the bootstrap peers kept in <data-dir>/config.toml (applied at the next daemon start)",
	}
	cfgPath := func() string { return filepath.Join(g.resolveDataDir(), daemon.ConfigFile) }
	list := &cobra.Command{
		Use:   "list",
		Short: "Print the bootstrap list",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			addrs, err := bootstrap.ReadFile(cfgPath())
			if err != nil {
				return err
			}
			sort.Strings(addrs)
			rows := make([][]string, len(addrs))
			for i, a := range addrs {
				rows[i] = []string{a}
			}
			if addrs == nil {
				addrs = []string{}
			}
			return g.emit(addrs, []string{"bootstrap peer"}, rows)
		},
	}
	edit := func(use, short string, fn func(path, addr string) (bool, error), verb string) *cobra.Command {
		return &cobra.Command{
			Use:   use + " ADDR",
			Short: short,
			Args:  cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				changed, err := fn(cfgPath(), args[0])
				if err != nil {
					return usageError{err}
				}
				if changed {
					fmt.Fprintf(g.stdout, "%s %s in %s; restart the daemon to apply\n", verb, args[0], cfgPath())
				} else {
					fmt.Fprintf(g.stdout, "no change: %s\n", args[0])
				}
				return nil
			},
		}
	}
	c.AddCommand(list,
		edit("add", "Add a peer (a multiaddr ending in /p2p/<peer ID>)", bootstrap.Add, "added"),
		edit("rm", "Remove a peer", bootstrap.Remove, "removed"))
	return c
}

func newVersionCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the ringkv version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			bi := daemon.BuildInfo()
			fields := [][2]string{{"version", bi["version"]}, {"go", bi["go"]}}
			if r := bi["revision"]; r != "" {
				fields = append(fields, [2]string{"revision", r})
			}
			return g.emitFields(bi, fields)
		},
	}
}

// testClock reads RINGKV_TEST_CLOCK_OFFSET, a duration by which the
// node's clock is shifted: fault injection only (it skews version
// timestamps, TTLs and tombstone ages, never failure detection timers).
func testClock(g *globals) ([]daemon.Option, error) {
	for _, kv := range g.environ() {
		v, ok := strings.CutPrefix(kv, daemon.EnvPrefix+"TEST_CLOCK_OFFSET=")
		if !ok || v == "" {
			continue
		}
		d, err := time.ParseDuration(v)
		if err != nil {
			return nil, usagef("RINGKV_TEST_CLOCK_OFFSET=%q is not a duration such as 2s or -500ms", v)
		}
		return []daemon.Option{daemon.WithClock(dht.OffsetClock{Base: dht.SystemClock{}, Offset: d})}, nil
	}
	return nil, nil
}
