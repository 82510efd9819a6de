package cli

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/mattn/go-isatty"
	"github.com/olekukonko/tablewriter"
)

type format int

const (
	formatPlain format = iota // tab-separated lines without a header: for pipes and scripts
	formatTable               // a bordered table with a header: for people
	formatJSON                // the API's JSON
)

// format picks the output format from -o, defaulting to a table on a
// terminal and plain text otherwise.
func (g *globals) format() (format, error) {
	switch g.output {
	case "":
		if f, ok := g.stdout.(*os.File); ok && isTerminal(f) {
			return formatTable, nil
		}
		return formatPlain, nil
	case "table":
		return formatTable, nil
	case "json":
		return formatJSON, nil
	}
	return 0, usagef("output format %q is not table or json", g.output)
}

// emit prints v as JSON, or header and rows as a table or plain lines.
func (g *globals) emit(v any, header []string, rows [][]string) error {
	f, err := g.format()
	if err != nil {
		return err
	}
	switch f {
	case formatJSON:
		enc := json.NewEncoder(g.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	case formatTable:
		t := tablewriter.NewWriter(g.stdout)
		t.Header(toAny(header)...)
		for _, r := range rows {
			if err := t.Append(toAny(r)...); err != nil {
				return err
			}
		}
		return t.Render()
	}
	for _, r := range rows {
		fmt.Fprintln(g.stdout, strings.Join(r, "\t"))
	}
	return nil
}

// emitFields prints one record as "name: value" lines (or a two-column
// table, or JSON).
func (g *globals) emitFields(v any, fields [][2]string) error {
	f, err := g.format()
	if err != nil {
		return err
	}
	if f == formatJSON {
		return g.emit(v, nil, nil)
	}
	rows := make([][]string, len(fields))
	for i, kv := range fields {
		rows[i] = []string{kv[0], kv[1]}
	}
	if f == formatTable {
		return g.emit(v, []string{"field", "value"}, rows)
	}
	for _, kv := range fields {
		fmt.Fprintf(g.stdout, "%s: %s\n", kv[0], kv[1])
	}
	return nil
}

func toAny(s []string) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}

// shortID abbreviates a peer ID for tables: the last 8 characters.
func shortID(id string) string {
	if len(id) > 10 {
		return "…" + id[len(id)-8:]
	}
	return id
}

// humanBytes prints a byte count with a binary unit.
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func isTerminal(f *os.File) bool { return isatty.IsTerminal(f.Fd()) }
