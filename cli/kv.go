package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/ringkv/ringkv/daemon/client"
)

// quorumFlags are the per-request replication options.
type quorumFlags struct {
	n           int
	consistency string
}

func (q *quorumFlags) register(c *cobra.Command, name, what string) {
	c.Flags().IntVar(&q.n, name, 0, "replicas that must "+what+" (default: the cluster's setting)")
	c.Flags().StringVar(&q.consistency, "consistency", "", "one, quorum or all, instead of --"+name)
}

func (q *quorumFlags) check(c *cobra.Command, name string) error {
	if q.n != 0 && q.consistency != "" {
		return usagef("give --%s or --consistency, not both", name)
	}
	if c.Flags().Changed(name) && q.n <= 0 {
		return usagef("--%s %d: give a number from 1 to the replica count, or leave it out for the cluster's setting", name, q.n)
	}
	switch q.consistency {
	case "", "one", "quorum", "all":
		return nil
	}
	return usagef("--consistency %q is not one, quorum or all", q.consistency)
}

func newPutCmd(g *globals) *cobra.Command {
	var (
		file    string
		q       quorumFlags
		ttl     time.Duration
		context string
		blind   bool
	)
	c := &cobra.Command{
		Use:   "put KEY [VALUE|-]",
		Short: "Store a value (VALUE, - for stdin, or --file)",
		Example: "  ringkv put greeting hello\n  echo hello | ringkv put greeting -\n" +
			"  ringkv put config --file app.json --ttl 24h\n  ringkv put counter 2 --context <context from get -o json>",
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := q.check(cmd, "w"); err != nil {
				return err
			}
			if cmd.Flags().Changed("ttl") && ttl <= 0 {
				return usagef("--ttl %v: give a positive duration such as 30s or 24h, or leave it out to keep the key until it is deleted", ttl)
			}
			value, err := readValue(g, args, file)
			if err != nil {
				return err
			}
			cl, err := g.client(1)
			if err != nil {
				return err
			}
			if context == "" && !blind {
				// Overwrite what is there now: write with the context of a
				// read, as a client of a versioned store should.
				cur, err := cl.Get(cmd.Context(), []byte(args[0]), client.ReadOptions{})
				switch {
				case err == nil:
					context = cur.Context
				case !errors.Is(err, client.ErrNotFound):
					return explain(err)
				}
			}
			res, err := cl.Put(cmd.Context(), []byte(args[0]), value, client.WriteOptions{
				W: q.n, Consistency: q.consistency, TTL: ttl, Context: context,
			})
			if err != nil {
				return explain(err)
			}
			return g.printWrite(res)
		},
	}
	c.Flags().StringVar(&file, "file", "", "read the value from this file")
	q.register(c, "w", "acknowledge the write")
	c.Flags().DurationVar(&ttl, "ttl", 0, "expire the key after this long, e.g. 30s or 24h")
	c.Flags().StringVar(&context, "context", "", "causal context from a read: replaces the versions that read returned")
	c.Flags().BoolVar(&blind, "blind", false, "write without reading the current context first: the value becomes a sibling of what is there")
	return c
}

// readValue takes the value from the argument, stdin (-) or --file.
func readValue(g *globals, args []string, file string) ([]byte, error) {
	switch {
	case file != "" && len(args) == 2:
		return nil, usagef("give the value as an argument or with --file, not both")
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("cannot read --file: %v", err)
		}
		return b, nil
	case len(args) < 2:
		return nil, usagef("missing VALUE: give it as the second argument, - to read stdin, or --file PATH")
	case args[1] == "-":
		b, err := io.ReadAll(g.stdin)
		if err != nil {
			return nil, fmt.Errorf("cannot read the value from stdin: %v", err)
		}
		return b, nil
	}
	return []byte(args[1]), nil
}

func (g *globals) printWrite(res client.WriteResponse) error {
	f, err := g.format()
	if err != nil {
		return err
	}
	if f == formatJSON {
		return g.emit(res, nil, nil)
	}
	fmt.Fprintln(g.stdout, "OK")
	return nil
}

func newGetCmd(g *globals) *cobra.Command {
	var q quorumFlags
	c := &cobra.Command{
		Use:   "get KEY",
		Short: "Print a value (raw bytes; -o json adds siblings, context and metadata)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := q.check(cmd, "r"); err != nil {
				return err
			}
			f, err := g.format()
			if err != nil {
				return err
			}
			cl, err := g.client(1)
			if err != nil {
				return err
			}
			res, err := cl.Get(cmd.Context(), []byte(args[0]), client.ReadOptions{R: q.n, Consistency: q.consistency})
			if err != nil {
				if e := explain(err); e != err {
					return e
				}
				return fmt.Errorf("key %q: %w", args[0], err)
			}
			if f == formatJSON {
				return g.emit(res, nil, nil)
			}
			return g.printSiblings(res)
		},
	}
	q.register(c, "r", "answer the read")
	return c
}

// printSiblings writes the value's bytes; with siblings, each on its own
// line, and a note on stderr explaining how to resolve them.
func (g *globals) printSiblings(res client.GetResponse) error {
	tty := false
	if f, ok := g.stdout.(*os.File); ok {
		tty = isTerminal(f)
	}
	for _, s := range res.Siblings {
		b, err := s.Bytes()
		if err != nil {
			return fmt.Errorf("bad sibling encoding from the daemon: %v", err)
		}
		g.stdout.Write(b)
		if len(res.Siblings) > 1 || (tty && (len(b) == 0 || b[len(b)-1] != '\n')) {
			fmt.Fprintln(g.stdout)
		}
	}
	if len(res.Siblings) > 1 {
		fmt.Fprintf(g.stderr, "ringkv: %q has %d siblings from concurrent writes; resolve with: ringkv put KEY VALUE --context %s\n",
			res.Key, len(res.Siblings), res.Context)
	}
	return nil
}

func newDeleteCmd(g *globals) *cobra.Command {
	var (
		q       quorumFlags
		context string
	)
	c := &cobra.Command{
		Use:   "delete KEY",
		Short: "Delete a key (a tombstone replicated like a write)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := q.check(cmd, "w"); err != nil {
				return err
			}
			cl, err := g.client(1)
			if err != nil {
				return err
			}
			res, err := cl.Delete(cmd.Context(), []byte(args[0]), client.WriteOptions{W: q.n, Consistency: q.consistency, Context: context})
			if err != nil {
				return explain(err)
			}
			return g.printWrite(res)
		},
	}
	q.register(c, "w", "acknowledge the delete")
	c.Flags().StringVar(&context, "context", "", "causal context from a read: deletes exactly the versions that read returned")
	return c
}
