package daemon

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

// load parses args with the daemon's flags and loads the config with env.
func load(t *testing.T, dir string, env []string, args ...string) (Config, error) {
	t.Helper()
	fs := pflag.NewFlagSet("daemon", pflag.ContinueOnError)
	RegisterFlags(fs)
	if err := fs.Parse(append([]string{"--data-dir", dir}, args...)); err != nil {
		t.Fatalf("parse %v: %v", args, err)
	}
	return Load(fs, func() []string { return env })
}

func TestConfigPrecedence(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, ConfigFile), []byte(
		"zone = \"file-zone\"\nreplicas = 5\nwrite_quorum = 3\nread_quorum = 3\nsync = false\nshutdown_timeout = \"3s\"\n"), 0o644)
	cases := []struct {
		name string
		env  []string
		args []string
		want func(c Config) bool
	}{
		{"defaults where nothing is set", nil, nil, func(c Config) bool {
			return c.API == "127.0.0.1:7601" && c.Conflicts == "siblings" && len(c.Listen) == 2
		}},
		{"file over defaults", nil, nil, func(c Config) bool {
			return c.Zone == "file-zone" && c.Replicas == 5 && !c.Sync && c.ShutdownTimeout == 3*time.Second
		}},
		{"env over file", []string{"RINGKV_ZONE=env-zone", "RINGKV_SYNC=true"}, nil, func(c Config) bool {
			return c.Zone == "env-zone" && c.Sync && c.Replicas == 5
		}},
		{"flags over env", []string{"RINGKV_ZONE=env-zone"}, []string{"--zone", "flag-zone", "--replicas", "4"}, func(c Config) bool {
			return c.Zone == "flag-zone" && c.Replicas == 4 && c.WriteQuorum == 3
		}},
		{"env lists are comma separated", []string{"RINGKV_LISTEN=/ip4/127.0.0.1/tcp/1, /ip4/127.0.0.1/tcp/2"}, nil, func(c Config) bool {
			return len(c.Listen) == 2 && c.Listen[1] == "/ip4/127.0.0.1/tcp/2"
		}},
		{"repeatable flags", nil, []string{"--listen", "/ip4/127.0.0.1/tcp/3", "--listen", "/ip4/127.0.0.1/udp/3/quic-v1"}, func(c Config) bool {
			return len(c.Listen) == 2 && c.Listen[0] == "/ip4/127.0.0.1/tcp/3"
		}},
		{"unset flags do not override the file", nil, []string{"--api", "127.0.0.1:0"}, func(c Config) bool {
			return c.API == "127.0.0.1:0" && c.Zone == "file-zone"
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := load(t, dir, c.env, c.args...)
			if err != nil {
				t.Fatal(err)
			}
			if !c.want(cfg) {
				t.Fatalf("unexpected config: %+v", cfg)
			}
		})
	}
}

func TestConfigErrorsNameTheKey(t *testing.T) {
	cases := []struct {
		name, file string
		env        []string
		args       []string
		want       string
	}{
		{"quorum above replicas", "", nil, []string{"--replicas", "3", "--write-quorum", "4"}, "write_quorum"},
		{"bad bool in env", "", []string{"RINGKV_SYNC=perhaps"}, nil, "sync"},
		{"bad int in file", "replicas = \"many\"\n", nil, nil, "replicas"},
		{"toml syntax error", "zone = \n", nil, nil, "line 1"},
		{"unknown key", "zones = 3\n", nil, nil, "zones"},
		{"bad conflicts", "", nil, []string{"--conflicts", "merge"}, "conflicts"},
		{"bad bootstrap", "bootstrap = [\"/ip4/1.2.3.4/tcp/1\"]\n", nil, nil, "bootstrap"},
		{"bad capacity", "", nil, []string{"--capacity", "0"}, "capacity"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			if c.file != "" {
				os.WriteFile(filepath.Join(dir, ConfigFile), []byte(c.file), 0o644)
			}
			_, err := load(t, dir, c.env, c.args...)
			if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("error %v; want a one-line ErrConfig naming %q", err, c.want)
			}
		})
	}
}

func TestQuorumWarning(t *testing.T) {
	c := DefaultConfig()
	if w := c.QuorumWarning(); w != "" {
		t.Fatalf("N=3 W=2 R=2 warned: %s", w)
	}
	c.WriteQuorum, c.ReadQuorum = 1, 1
	if w := c.QuorumWarning(); !strings.Contains(w, "may miss") {
		t.Fatalf("W+R<=N gave no warning")
	}
}

func TestConfigTemplateLoadsAsDefaults(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, ConfigFile), []byte(ConfigTemplate()), 0o644)
	cfg, err := load(t, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	d := DefaultConfig()
	d.DataDir = dir
	if cfg.API != d.API || cfg.Replicas != d.Replicas || cfg.Capacity != d.Capacity || cfg.ShutdownTimeout != d.ShutdownTimeout || len(cfg.Listen) != 2 {
		t.Fatalf("template does not load as the defaults: %+v", cfg)
	}
}
