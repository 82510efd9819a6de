package bootstrap

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	toml "github.com/pelletier/go-toml/v2"
)

// writeConfig writes content to a fresh config.toml and returns its path.
func writeConfig(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.toml")
	if err := os.WriteFile(path, []byte(content), 0o640); err != nil {
		t.Fatal(err)
	}
	return path
}

func readConfig(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestReadFile(t *testing.T) {
	tests := []struct {
		name      string
		content   string // "<missing>" means no file
		want      []string
		wantErrIn string
	}{
		{name: "missing file", content: "<missing>", want: nil},
		{name: "empty file", content: "", want: nil},
		{name: "no key", content: "# ringkv\nlisten = \"/ip4/0.0.0.0/tcp/7600\"\n", want: nil},
		{name: "empty array", content: "bootstrap = []\n", want: []string{}},
		{name: "single line", content: "bootstrap = [\"/a\", '/b'] # seeds\n", want: []string{"/a", "/b"}},
		{name: "multi line with comments", content: "bootstrap = [\n  # first\n  \"/a\",\n\n  \"/b\", # second\n]\n", want: []string{"/a", "/b"}},
		{name: "key in a table is not ours", content: "[daemon]\nbootstrap = [\"/x\"]\n", want: nil},
		{name: "syntax error", content: "a = 1\nbootstrap = [\n", wantErrIn: ":2:"},
		{name: "duplicate key", content: "a = 1\na = 2\n", wantErrIn: ":2:1: key a is already defined"},
		{name: "not an array", content: "x = 1\nbootstrap = \"/a\"\n", wantErrIn: `config.toml:2: "bootstrap" must be a top-level array of strings`},
		{name: "array of numbers", content: "bootstrap = [1]\n", wantErrIn: "must be a top-level array of strings"},
		{name: "table", content: "[bootstrap]\na = 1\n", wantErrIn: "must be a top-level array of strings"},
		{name: "dotted", content: "bootstrap.a = 1\n", wantErrIn: "must be a top-level array of strings"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "config.toml")
			if tt.content != "<missing>" {
				path = writeConfig(t, tt.content)
			}
			got, err := ReadFile(path)
			if tt.wantErrIn != "" {
				if err == nil || !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tt.wantErrIn) {
					t.Fatalf("ReadFile error = %v, want ErrInvalidConfig containing %q", err, tt.wantErrIn)
				}
				if strings.Contains(err.Error(), "\n") {
					t.Errorf("error is not one line: %q", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ReadFile: %v", err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("ReadFile = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestAddRemove edits files of many shapes and compares the whole result,
// so every byte outside the bootstrap entry is checked.
func TestAddRemove(t *testing.T) {
	a := "/ip4/10.0.0.1/tcp/7600/p2p/" + testID(t, 1).String()
	b := "/ip4/10.0.0.2/tcp/7600/p2p/" + testID(t, 2).String()
	tests := []struct {
		name    string
		before  string // "<missing>" means no file
		op      string // "add" or "rm"
		addr    string
		after   string // "<missing>" means still no file
		changed bool
	}{
		{
			name:   "absent key goes after the last top-level key, before tables",
			before: "# ringkv config\nlisten = \"/ip4/0.0.0.0/tcp/7600\" # where\n\n# storage\n[store]\ndir = \"/var/lib/ringkv\"\n",
			op:     "add", addr: a, changed: true,
			after: "# ringkv config\nlisten = \"/ip4/0.0.0.0/tcp/7600\" # where\nbootstrap = [\n  \"" + a + "\",\n]\n\n# storage\n[store]\ndir = \"/var/lib/ringkv\"\n",
		},
		{
			name:   "absent key with only tables goes above the first table's comment",
			before: "# storage settings\n[store]\ndir = \"x\"\n",
			op:     "add", addr: a, changed: true,
			after: "bootstrap = [\n  \"" + a + "\",\n]\n\n# storage settings\n[store]\ndir = \"x\"\n",
		},
		{
			name:   "absent key in a file without final newline",
			before: "listen = \"x\"",
			op:     "add", addr: a, changed: true,
			after: "listen = \"x\"\nbootstrap = [\n  \"" + a + "\",\n]\n",
		},
		{
			name:   "empty file",
			before: "",
			op:     "add", addr: a, changed: true,
			after: "bootstrap = [\n  \"" + a + "\",\n]\n",
		},
		{
			name:   "missing file is created",
			before: "<missing>",
			op:     "add", addr: a, changed: true,
			after: "bootstrap = [\n  \"" + a + "\",\n]\n",
		},
		{
			name:   "single-line array becomes multi-line, trailing comment kept",
			before: "# top\nbootstrap = [\"" + a + "\"] # seeds\nport = 1\n",
			op:     "add", addr: b, changed: true,
			after: "# top\nbootstrap = [\n  \"" + a + "\",\n  \"" + b + "\",\n] # seeds\nport = 1\n",
		},
		{
			name:   "multi-line array, tables after the key",
			before: "bootstrap = [\n    '" + a + "',\n]\n\n[store] # s\nx = 1\n",
			op:     "add", addr: b, changed: true,
			after: "bootstrap = [\n  \"" + a + "\",\n  \"" + b + "\",\n]\n\n[store] # s\nx = 1\n",
		},
		{
			name:   "duplicate add in another spelling",
			before: "bootstrap = [\"" + a + "\"]\n",
			op:     "add", addr: " " + strings.Replace(a, "/p2p/", "/ipfs/", 1) + " ", changed: false,
			after: "bootstrap = [\"" + a + "\"]\n",
		},
		{
			name:   "add stores the canonical spelling",
			before: "x = 1\n",
			op:     "add", addr: strings.Replace(a, "/p2p/", "/ipfs/", 1), changed: true,
			after: "x = 1\nbootstrap = [\n  \"" + a + "\",\n]\n",
		},
		{
			name:   "indented key keeps its indentation, CRLF kept",
			before: "x = 1\r\n  bootstrap = []\r\ny = 2\r\n",
			op:     "add", addr: a, changed: true,
			after: "x = 1\r\n  bootstrap = [\r\n    \"" + a + "\",\r\n  ]\r\ny = 2\r\n",
		},
		{
			name:   "remove one of two",
			before: "# c\nbootstrap = [\n  \"" + a + "\", # first\n  \"" + b + "\",\n]\n[t]\n",
			op:     "rm", addr: a, changed: true,
			after: "# c\nbootstrap = [\n  \"" + b + "\",\n]\n[t]\n",
		},
		{
			name:   "remove the last leaves an empty array",
			before: "bootstrap = [\"" + a + "\"]\nz = true\n",
			op:     "rm", addr: a, changed: true,
			after: "bootstrap = []\nz = true\n",
		},
		{
			name:   "remove an unparseable entry by its text",
			before: "bootstrap = [\"oops\", \"" + a + "\"]\n",
			op:     "rm", addr: " oops", changed: true,
			after: "bootstrap = [\n  \"" + a + "\",\n]\n",
		},
		{
			name:   "remove unknown is not an error",
			before: "bootstrap = [\"" + a + "\"]\n",
			op:     "rm", addr: b, changed: false,
			after: "bootstrap = [\"" + a + "\"]\n",
		},
		{
			name:   "remove from missing file creates nothing",
			before: "<missing>",
			op:     "rm", addr: a, changed: false,
			after: "<missing>",
		},
		{
			name:   "quoted key",
			before: "\"bootstrap\" = []\n",
			op:     "add", addr: a, changed: true,
			after: "bootstrap = [\n  \"" + a + "\",\n]\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "config.toml")
			if tt.before != "<missing>" {
				path = writeConfig(t, tt.before)
			}
			var changed bool
			var err error
			if tt.op == "add" {
				changed, err = Add(path, tt.addr)
			} else {
				changed, err = Remove(path, tt.addr)
			}
			if err != nil {
				t.Fatalf("%s: %v", tt.op, err)
			}
			if changed != tt.changed {
				t.Errorf("changed = %v, want %v", changed, tt.changed)
			}
			if tt.after == "<missing>" {
				if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
					t.Fatalf("file exists after %s: %v", tt.op, err)
				}
				return
			}
			if got := readConfig(t, path); got != tt.after {
				t.Errorf("file after %s:\n%s\nwant:\n%s", tt.op, got, tt.after)
			}
			entries, _ := os.ReadDir(filepath.Dir(path))
			if len(entries) != 1 {
				t.Errorf("directory holds %d entries, want only config.toml (temp file left behind?)", len(entries))
			}
		})
	}
}

func TestEditKeepsModeAndFollowsSymlink(t *testing.T) {
	a := "/ip4/10.0.0.1/tcp/7600/p2p/" + testID(t, 1).String()
	path := writeConfig(t, "x = 1\n")
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(t.TempDir(), "link.toml")
	if err := os.Symlink(path, link); err != nil {
		t.Skipf("symlinks unsupported: %v", err)
	}
	if changed, err := Add(link, a); err != nil || !changed {
		t.Fatalf("Add = %v, %v", changed, err)
	}
	st, err := os.Lstat(link)
	if err != nil || st.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("link replaced by a regular file: %v %v", st.Mode(), err)
	}
	st, err = os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("mode = %v (%v), want 0600", st.Mode().Perm(), err)
	}
	if got, _ := ReadFile(path); !slices.Equal(got, []string{a}) {
		t.Errorf("ReadFile = %q", got)
	}
}

func TestEditRejects(t *testing.T) {
	a := "/ip4/10.0.0.1/tcp/7600/p2p/" + testID(t, 1).String()
	tests := []struct {
		name      string
		content   string
		op        string
		addr      string
		wantIs    error
		wantErrIn string
	}{
		{"invalid TOML", "x = 1\ny = [\nbootstrap = []\n", "add", a, ErrInvalidConfig, "config.toml:3:"},
		{"invalid TOML on remove", "x = \"unterminated\n", "rm", a, ErrInvalidConfig, "config.toml:1:"},
		{"bootstrap of wrong type", "bootstrap = 7\n", "add", a, ErrInvalidConfig, "config.toml:1:"},
		{"bad address", "x = 1\n", "add", "/ip4/1.2.3.4/tcp/7600", ErrInvalidAddr, "has no /p2p/"},
		{"empty address", "x = 1\n", "add", " ", ErrInvalidAddr, "is empty"},
		{"empty address on remove", "x = 1\n", "rm", "", ErrInvalidAddr, "is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeConfig(t, tt.content)
			var changed bool
			var err error
			if tt.op == "add" {
				changed, err = Add(path, tt.addr)
			} else {
				changed, err = Remove(path, tt.addr)
			}
			if err == nil || !errors.Is(err, tt.wantIs) || !strings.Contains(err.Error(), tt.wantErrIn) {
				t.Fatalf("%s error = %v, want %v containing %q", tt.op, err, tt.wantIs, tt.wantErrIn)
			}
			if changed {
				t.Error("changed = true on error")
			}
			if got := readConfig(t, path); got != tt.content {
				t.Errorf("file changed on error:\n%s", got)
			}
		})
	}
}

// FuzzRewrite feeds arbitrary documents through the same decode and rewrite
// path Add and Remove use. For every valid document the result must decode
// to the new list, keep every other key's value, and keep the bytes around
// the entry unchanged.
func FuzzRewrite(f *testing.F) {
	seeds := []string{
		"",
		"x = 1",
		"bootstrap = []\n",
		"bootstrap = ['/a', \"/b\"] # c\n[t]\nbootstrap = 1\n",
		"# h\n\n# t\n[t]\na = 1\n",
		"a = \"\"\"\n# x\n\"\"\"\n[t]\n",
		"x = 1\r\n  bootstrap = [\r\n # c\r\n '/a' ,\r\n]\r\n",
		"a.b = 1\n\"bootstrap\" = [] \n[[arr]]\n",
		"bootstrap = 1\n",
		"k = [\n",
	}
	for _, s := range seeds {
		f.Add(s, "/ip4/1.2.3.4/tcp/1/p2p/x\"\\\u0001")
	}
	f.Fuzz(func(t *testing.T, doc, extra string) {
		if !utf8.ValidString(extra) {
			return // TOML cannot hold it; Parse rejects such addresses
		}
		data := []byte(doc)
		list, sp, err := decode("f.toml", data)
		if err != nil {
			if !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("decode error %v does not wrap ErrInvalidConfig", err)
			}
			return
		}
		next := append(slices.Clone(list), extra)
		out := rewrite(data, sp, next)
		got, _, err := decode("f.toml", out)
		if err != nil || !slices.Equal(got, next) {
			t.Fatalf("rewrite of %q with %q gave %q: list %q, %v", doc, extra, out, got, err)
		}
		if others(t, data) != others(t, out) {
			t.Fatalf("rewrite of %q changed other keys: %q", doc, out)
		}
		if sp.found {
			tail := len(data) - sp.end
			if string(out[:sp.start]) != doc[:sp.start] || string(out[len(out)-tail:]) != doc[sp.end:] {
				t.Fatalf("rewrite of %q changed bytes outside the entry: %q", doc, out)
			}
		}
	})
}

// others renders every key except bootstrap, for comparison.
func others(t *testing.T, data []byte) string {
	t.Helper()
	var m map[string]any
	if err := toml.Unmarshal(data, &m); err != nil {
		t.Fatalf("unmarshal: %v", err)
	}
	delete(m, Key)
	return fmt.Sprint(m)
}
