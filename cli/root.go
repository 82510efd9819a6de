// Package cli is ringkv's command line: the daemon, the commands that talk
// to a running daemon through its local HTTP API, the local cluster for
// development, the load generator and the routing simulator. Every command
// prints errors as one line on stderr and exits with a documented code.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ringkv/ringkv/daemon"
	"github.com/ringkv/ringkv/daemon/client"
)

// Exit codes.
const (
	ExitOK          = 0
	ExitError       = 1
	ExitUsage       = 2
	ExitUnreachable = 3
	ExitNotFound    = 4
	ExitNotHealthy  = 5
	// ExitStale: the daemon refused a data dir last up too long ago;
	// restarting it as it is cannot help (see daemon.ErrStaleDataDir).
	ExitStale = 6
)

// usageError marks a mistake in how a command was called.
type usageError struct{ err error }

func (u usageError) Error() string { return u.err.Error() }
func (u usageError) Unwrap() error { return u.err }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// exitError carries an explicit exit code with its message.
type exitError struct {
	code int
	err  error
}

func (e exitError) Error() string { return e.err.Error() }
func (e exitError) Unwrap() error { return e.err }

// globals are the flags every command shares.
type globals struct {
	api     string
	dataDir string
	output  string
	stdout  io.Writer
	stderr  io.Writer
	stdin   io.Reader
	environ func() []string
}

// Execute runs the command line args and returns the process exit code.
func Execute(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	g := &globals{stdout: stdout, stderr: stderr, stdin: stdin, environ: os.Environ}
	root := newRoot(g)
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return ExitOK
	}
	code := exitCode(err)
	fmt.Fprintln(stderr, "ringkv: "+oneLine(err.Error()))
	return code
}

func exitCode(err error) int {
	var ue usageError
	var ee exitError
	var ae *client.APIError
	switch {
	case errors.As(err, &ee):
		return ee.code
	case errors.As(err, &ue), errors.Is(err, daemon.ErrConfig), strings.HasPrefix(err.Error(), "unknown command"):
		return ExitUsage
	case errors.As(err, &ae) && (ae.Status == http.StatusBadRequest || ae.Status == http.StatusRequestEntityTooLarge):
		// The daemon refused an argument or flag it alone can check (a
		// quorum over N, a value over max_value_size) and changed nothing.
		return ExitUsage
	case errors.Is(err, client.ErrUnreachable):
		return ExitUnreachable
	case errors.Is(err, client.ErrNotFound):
		return ExitNotFound
	case errors.Is(err, daemon.ErrStaleDataDir):
		return ExitStale
	}
	return ExitError
}

func oneLine(s string) string {
	s = strings.TrimSpace(s)
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", " ")), " ")
}

func newRoot(g *globals) *cobra.Command {
	root := &cobra.Command{
		Use:   "ringkv",
		Short: "ringkv: a masterless peer-to-peer key-value store",
		Long: "ringkv is a distributed hash table: daemons join a libp2p network, own segments of a\n" +
			"consistent-hashing ring, keep each value on N nodes in different zones and answer with\n" +
			"tunable quorums. This binary is both the daemon and the CLI that talks to it.\n\n" +
			"Exit codes: 0 ok, 1 error, 2 usage, 3 daemon unreachable, 4 key not found, 5 not healthy,\n" +
			"6 the daemon refused a stale data dir.",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&g.api, "api", "", "daemon API address host:port (default: $RINGKV_API, then <data-dir>/api)")
	root.PersistentFlags().StringVar(&g.dataDir, "data-dir", "", "data directory (default: $RINGKV_DATA_DIR, then ~/.ringkv)")
	root.PersistentFlags().StringVarP(&g.output, "output", "o", "", "output format: table or json (default: table on a terminal, plain text when piped)")
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return usagef("%v; see `%s --help`", err, c.CommandPath())
	})
	root.AddCommand(
		newInitCmd(g), newDaemonCmd(g), newDevCmd(g),
		newPutCmd(g), newGetCmd(g), newDeleteCmd(g),
		newStatusCmd(g), newPeersCmd(g), newIDCmd(g), newMembersCmd(g), newRingCmd(g),
		newLocateCmd(g), newLeaveCmd(g), newRepairCmd(g), newHealthCmd(g),
		newBootstrapCmd(g), newBenchCmd(g), newSimCmd(g), newVersionCmd(g),
	)
	for _, c := range root.Commands() {
		wrapArgs(c)
	}
	return root
}

// wrapArgs turns cobra's argument-count errors into usage errors.
func wrapArgs(c *cobra.Command) {
	if c.Args != nil {
		inner := c.Args
		c.Args = func(cmd *cobra.Command, args []string) error {
			if err := inner(cmd, args); err != nil {
				return usagef("%v; usage: %s", err, cmd.UseLine())
			}
			return nil
		}
	}
	for _, sub := range c.Commands() {
		wrapArgs(sub)
	}
}

// resolveDataDir is --data-dir, then $RINGKV_DATA_DIR, then ~/.ringkv.
func (g *globals) resolveDataDir() string {
	if g.dataDir != "" {
		return g.dataDir
	}
	return daemon.DefaultDataDir()
}

// client finds the daemon: --api, then $RINGKV_API, then <data-dir>/api.
func (g *globals) client(maxConns int) (*client.Client, error) {
	if g.api != "" {
		return client.New(g.api, maxConns), nil
	}
	if a := os.Getenv(daemon.EnvPrefix + "API"); a != "" {
		return client.New(a, maxConns), nil
	}
	dir := g.resolveDataDir()
	b, err := os.ReadFile(filepath.Join(dir, daemon.APIFile))
	if err != nil {
		return nil, fmt.Errorf("%w: no daemon found (%s has no api file); start one with `ringkv daemon` or `ringkv dev`, or pass --api",
			client.ErrUnreachable, dir)
	}
	return client.New(strings.TrimSpace(string(b)), maxConns), nil
}

// explain rewrites an unreachable-daemon error into advice.
func explain(err error) error {
	if errors.Is(err, client.ErrUnreachable) && !strings.Contains(err.Error(), "no daemon found") {
		return fmt.Errorf("%w; is the daemon running? start it with `ringkv daemon` or point --api at it", err)
	}
	return err
}
