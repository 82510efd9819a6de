package bootstrap

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	toml "github.com/pelletier/go-toml/v2"
	"github.com/pelletier/go-toml/v2/unstable"
)

// Key is the top-level TOML key that holds the bootstrap list.
const Key = "bootstrap"

// newFileMode is the mode of a config file that Add creates because none
// existed. An existing file keeps its mode.
const newFileMode fs.FileMode = 0o644

// ReadFile returns the bootstrap list of the TOML config file at path, as
// written (not parsed as addresses). A missing file or a missing key is an
// empty list. A file that is not valid TOML, or whose bootstrap key is not
// an array of strings, gives an error wrapping ErrInvalidConfig that names
// the line.
func ReadFile(path string) ([]string, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("bootstrap: read config: %w", err)
	}
	list, _, err := decode(path, data)
	return list, err
}

// Add appends addr to the bootstrap list in the config file at path, after
// checking it with Parse. It stores the canonical spelling (see Canonical)
// and reports changed=false when the list already holds the address. A
// missing file is created.
//
// Only the bootstrap entry is rewritten, as a multi-line array with one
// address per line; every other line and comment is kept byte for byte
// (comments inside the old array are not kept). A missing key is added at
// top level, after the last top-level key or else before the first table.
// The write is atomic (temp file in the same directory, then rename) and
// keeps the file's mode.
func Add(path, addr string) (changed bool, err error) {
	if _, err := Parse(addr); err != nil {
		return false, err
	}
	want := Canonical(addr)
	return edit(path, func(list []string) ([]string, bool) {
		for _, have := range list {
			if Canonical(have) == want {
				return list, false
			}
		}
		return append(list, want), true
	})
}

// Remove deletes addr from the bootstrap list in the config file at path,
// matching entries by canonical spelling (see Canonical). Removing an
// address that is not listed, or from a missing file, is changed=false and
// no error. The file is rewritten as Add describes.
func Remove(path, addr string) (changed bool, err error) {
	drop := Canonical(addr)
	if drop == "" {
		return false, &AddrError{Addr: drop, Problem: "is empty", Hint: "name the address to remove, as `ringkv bootstrap list` prints it"}
	}
	return edit(path, func(list []string) ([]string, bool) {
		kept := slices.DeleteFunc(slices.Clone(list), func(have string) bool {
			return Canonical(have) == drop
		})
		return kept, len(kept) != len(list)
	})
}

// edit applies fn to the bootstrap list of the file at path and writes the
// file back when fn reports a change. Nothing is written on any error.
func edit(path string, fn func([]string) ([]string, bool)) (bool, error) {
	if real, err := filepath.EvalSymlinks(path); err == nil {
		path = real // rename over the target, not over the link
	}
	mode := newFileMode
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		data = nil
	case err != nil:
		return false, fmt.Errorf("bootstrap: read config: %w", err)
	default:
		if st, serr := os.Stat(path); serr == nil {
			mode = st.Mode().Perm()
		}
	}
	list, sp, err := decode(path, data)
	if err != nil {
		return false, err
	}
	next, changed := fn(list)
	if !changed {
		return false, nil
	}
	out := rewrite(data, sp, next)
	// Guard against a rewrite bug ever corrupting a user's config.
	got, _, err := decode(path, out)
	if err != nil || !slices.Equal(got, next) {
		return false, fmt.Errorf("bootstrap: internal error: rewriting %s would not round-trip (%v); file left unchanged", path, err)
	}
	if err := writeAtomic(path, out, mode); err != nil {
		return false, err
	}
	return true, nil
}

// span locates the bootstrap entry in a document, or where to add one.
type span struct {
	found      bool
	start, end int // byte range of `bootstrap = [...]` when found
	line       int // 1-based line of the entry when found
	insertAt   int // where to add the entry when not found
	// blankAfter: the entry is added right above a table header (or its
	// comment block), so it gets a blank line after it.
	blankAfter bool
}

// decode validates the whole document, extracts the bootstrap list and
// locates its entry.
func decode(path string, data []byte) ([]string, span, error) {
	var doc map[string]any
	if err := toml.Unmarshal(data, &doc); err != nil {
		var de *toml.DecodeError
		if errors.As(err, &de) {
			line, col := de.Position()
			return nil, span{}, fmt.Errorf("%w: %s:%d:%d: %s: fix the TOML there; nothing was changed",
				ErrInvalidConfig, path, line, col, oneLine(strings.TrimPrefix(de.Error(), "toml: ")))
		}
		return nil, span{}, fmt.Errorf("%w: %s: %s", ErrInvalidConfig, path, oneLine(err.Error()))
	}
	sp := locate(data)
	v, ok := doc[Key]
	if !ok {
		return nil, sp, nil
	}
	where := path
	if sp.found {
		where = fmt.Sprintf("%s:%d", path, sp.line)
	}
	bad := fmt.Errorf("%w: %s: %q must be a top-level array of strings, like %s = [\"/ip4/10.0.0.1/tcp/7600/p2p/<peer ID>\"]",
		ErrInvalidConfig, where, Key, Key)
	items, ok := v.([]any)
	if !ok || !sp.found {
		return nil, sp, bad
	}
	list := make([]string, 0, len(items))
	for _, it := range items {
		s, ok := it.(string)
		if !ok {
			return nil, sp, bad
		}
		list = append(list, s)
	}
	return list, sp, nil
}

// locate scans the top-level expressions of a valid document for the
// bootstrap key-value and, when it is absent, picks where to add it.
func locate(data []byte) span {
	var (
		p         unstable.Parser
		sp        span
		lastKVEnd = -1
		header    = -1
	)
	p.Reset(data)
	for p.NextExpression() {
		e := p.Expression()
		if e.Kind == unstable.Table || e.Kind == unstable.ArrayTable {
			k := e.Key()
			if k.Next() {
				header = lineStart(data, int(k.Node().Raw.Offset))
			}
			break
		}
		if e.Kind != unstable.KeyValue {
			continue
		}
		start, end := int(e.Raw.Offset), int(e.Raw.Offset+e.Raw.Length)
		lastKVEnd = end
		if isBootstrapKey(e) {
			return span{found: true, start: start, end: end, line: p.Shape(e.Raw).Start.Line}
		}
	}
	switch {
	case lastKVEnd >= 0:
		sp.insertAt = lineEnd(data, lastKVEnd)
	case header >= 0:
		sp.insertAt = commentBlockStart(data, header)
		sp.blankAfter = true
	default:
		sp.insertAt = len(data)
	}
	return sp
}

// isBootstrapKey reports whether a KeyValue's key is exactly `bootstrap`
// (bare or quoted, not dotted).
func isBootstrapKey(kv *unstable.Node) bool {
	it := kv.Key()
	if !it.Next() || string(it.Node().Data) != Key {
		return false
	}
	return !it.Next()
}

// rewrite returns data with the bootstrap entry replaced by (or extended
// with) list, written as a multi-line array.
func rewrite(data []byte, sp span, list []string) []byte {
	nl := "\n"
	if bytes.Contains(data, []byte("\r\n")) {
		nl = "\r\n"
	}
	var out bytes.Buffer
	out.Grow(len(data) + 64*(len(list)+1))
	if sp.found {
		indent := leadingSpace(data[lineStart(data, sp.start):sp.start])
		out.Write(data[:sp.start])
		out.WriteString(formatEntry(list, indent, nl))
		out.Write(data[sp.end:])
		return out.Bytes()
	}
	out.Write(data[:sp.insertAt])
	if sp.insertAt > 0 && data[sp.insertAt-1] != '\n' {
		out.WriteString(nl)
	}
	out.WriteString(formatEntry(list, "", nl))
	out.WriteString(nl)
	if sp.blankAfter {
		out.WriteString(nl)
	}
	out.Write(data[sp.insertAt:])
	return out.Bytes()
}

// formatEntry renders `bootstrap = [...]` with one address per line,
// indented one level deeper than indent. It has no trailing newline.
func formatEntry(list []string, indent, nl string) string {
	if len(list) == 0 {
		return Key + " = []"
	}
	var b strings.Builder
	b.WriteString(Key + " = [" + nl)
	for _, s := range list {
		b.WriteString(indent + "  " + quoteTOML(s) + "," + nl)
	}
	b.WriteString(indent + "]")
	return b.String()
}

// quoteTOML renders s as a TOML basic string.
func quoteTOML(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\u%04X`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// lineStart returns the offset of the first byte of the line holding off.
func lineStart(data []byte, off int) int {
	return bytes.LastIndexByte(data[:off], '\n') + 1
}

// lineEnd returns the offset just past the newline that ends the line
// holding off, or len(data) on the last line.
func lineEnd(data []byte, off int) int {
	i := bytes.IndexByte(data[off:], '\n')
	if i < 0 {
		return len(data)
	}
	return off + i + 1
}

// commentBlockStart backs up from the line start at off over the comment
// lines directly above it (no blank line in between), so an entry added
// there does not separate a table header from its comment.
func commentBlockStart(data []byte, off int) int {
	for off > 0 {
		prev := lineStart(data, off-1)
		line := bytes.TrimSpace(data[prev:off])
		if len(line) == 0 || line[0] != '#' {
			break
		}
		off = prev
	}
	return off
}

// leadingSpace returns the run of spaces and tabs that starts b.
func leadingSpace(b []byte) string {
	n := 0
	for n < len(b) && (b[n] == ' ' || b[n] == '\t') {
		n++
	}
	return string(b[:n])
}

// writeAtomic replaces path with data: it writes a temp file in the same
// directory, syncs it, gives it mode, renames it over path and syncs the
// directory, so a crash leaves either the old or the new file.
func writeAtomic(path string, data []byte, mode fs.FileMode) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return fmt.Errorf("bootstrap: write config: %w", err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	if _, err = f.Write(data); err != nil {
		return fmt.Errorf("bootstrap: write config: %w", err)
	}
	if err = f.Chmod(mode); err != nil {
		return fmt.Errorf("bootstrap: write config: %w", err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("bootstrap: write config: %w", err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("bootstrap: write config: %w", err)
	}
	if err = os.Rename(tmp, path); err != nil {
		return fmt.Errorf("bootstrap: write config: %w", err)
	}
	if d, derr := os.Open(dir); derr == nil {
		_ = d.Sync() // best effort: the rename is durable on most systems anyway
		_ = d.Close()
	}
	return nil
}
