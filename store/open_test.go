package store_test

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ringkv/ringkv/store"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*store.Config)
		ok     bool
	}{
		{"default", func(*store.Config) {}, true},
		{"no dir", func(c *store.Config) { c.Dir = "" }, false},
		{"commit-log segment below 64 KiB", func(c *store.Config) { c.CommitLogSegmentSize = 64<<10 - 1 }, false},
		{"commit-log segment 64 KiB", func(c *store.Config) { c.CommitLogSegmentSize = 64 << 10 }, true},
		{"tiny memtable", func(c *store.Config) { c.MemTableSize = 64 << 10 }, false},
		{"no memtables", func(c *store.Config) { c.NumMemtables = 0 }, false},
		{"no L0 tables", func(c *store.Config) { c.NumLevelZeroTables = 0 }, false},
		{"no block cache", func(c *store.Config) { c.BlockCacheSize = 0 }, false},
		{"unbounded index cache", func(c *store.Config) { c.IndexCacheSize = 0 }, true},
		{"negative index cache", func(c *store.Config) { c.IndexCacheSize = -1 }, false},
		{"vlog file below max record", func(c *store.Config) { c.ValueLogFileSize = 64 << 20 }, false},
		{"vlog file 2 GiB", func(c *store.Config) { c.ValueLogFileSize = 2 << 30 }, false},
		{"value threshold 0", func(c *store.Config) { c.ValueThreshold = 0 }, false},
		{"value threshold over 1 MiB", func(c *store.Config) { c.ValueThreshold = 1<<20 + 1 }, false},
		{"value threshold over batch limit", func(c *store.Config) { c.MemTableSize = 4 << 20; c.ValueThreshold = 1 << 20 }, false},
		{"one compactor", func(c *store.Config) { c.NumCompactors = 1 }, false},
		{"no compactors", func(c *store.Config) { c.NumCompactors = 0 }, true},
		{"gc disabled", func(c *store.Config) { c.GCInterval = 0 }, true},
		{"negative gc interval", func(c *store.Config) { c.GCInterval = -time.Second }, false},
		{"nil logger", func(c *store.Config) { c.Logger = nil }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := store.DefaultConfig("/var/lib/ringkv")
			tt.mutate(&cfg)
			err := cfg.Validate()
			if tt.ok != (err == nil) {
				t.Fatalf("Validate = %v, want ok=%v", err, tt.ok)
			}
			if err != nil && !errors.Is(err, store.ErrInvalidConfig) {
				t.Fatalf("Validate = %v, want it to wrap ErrInvalidConfig", err)
			}
		})
	}
}

func TestOpenInvalidConfig(t *testing.T) {
	cfg := testConfig(t)
	cfg.NumCompactors = 1
	if _, err := store.Open(cfg); !errors.Is(err, store.ErrInvalidConfig) {
		t.Fatalf("Open = %v, want ErrInvalidConfig", err)
	}
}

func TestOpenLocked(t *testing.T) {
	cfg := testConfig(t)
	first, err := store.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	_, err = store.Open(cfg)
	if !errors.Is(err, store.ErrLocked) {
		t.Fatalf("second Open = %v, want ErrLocked", err)
	}
	for _, want := range []string{cfg.Dir, "in use by another process", "--data-dir"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	// The failed Open must not have disturbed the first store.
	mustPut(t, first, "k", "v")
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	openStore(t, cfg) // free again
}

func TestOpenUnreadable(t *testing.T) {
	notADir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notADir, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		dir  func(t *testing.T) string
		root bool // whether the case also works as root
	}{
		{"path through a file", func(*testing.T) string { return filepath.Join(notADir, "data") }, true},
		{"directory without permissions", func(t *testing.T) string {
			d := filepath.Join(t.TempDir(), "locked")
			if err := os.Mkdir(d, 0o000); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = os.Chmod(d, 0o700) })
			return d
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !tt.root && os.Geteuid() == 0 {
				t.Skip("root ignores permission bits")
			}
			cfg := testConfig(t)
			cfg.Dir = tt.dir(t)
			_, err := store.Open(cfg)
			if !errors.Is(err, store.ErrUnreadable) {
				t.Fatalf("Open(%s) = %v, want ErrUnreadable", cfg.Dir, err)
			}
			if !strings.Contains(err.Error(), cfg.Dir) {
				t.Errorf("error %q does not name the directory", err)
			}
			var pathErr *fs.PathError
			if !errors.As(err, &pathErr) {
				t.Errorf("error %q does not wrap the OS error", err)
			}
		})
	}
}

// logSink collects what a captureHandler receives.
type logSink struct {
	mu      sync.Mutex
	entries []logEntry
}

type logEntry struct {
	level     slog.Level
	msg       string
	component string
}

// captureHandler is a slog.Handler that records level, message and the
// "component" attribute.
type captureHandler struct {
	sink      *logSink
	component string
}

func (h *captureHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *captureHandler) WithGroup(string) slog.Handler            { return h }

func (h *captureHandler) WithAttrs(as []slog.Attr) slog.Handler {
	c := *h
	for _, a := range as {
		if a.Key == "component" {
			c.component = a.Value.String()
		}
	}
	return &c
}

func (h *captureHandler) Handle(_ context.Context, r slog.Record) error {
	h.sink.mu.Lock()
	defer h.sink.mu.Unlock()
	h.sink.entries = append(h.sink.entries, logEntry{level: r.Level, msg: r.Message, component: h.component})
	return nil
}

func TestBadgerLogsRouted(t *testing.T) {
	sink := &logSink{}
	cfg := testConfig(t)
	cfg.Logger = slog.New(&captureHandler{sink: sink})
	s, err := store.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	mustPut(t, s, "k", "v")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	sink.mu.Lock()
	defer sink.mu.Unlock()
	badgerLines := 0
	for _, e := range sink.entries {
		if e.component != "badger" {
			continue
		}
		badgerLines++
		if e.level != slog.LevelDebug && e.level != slog.LevelWarn {
			t.Errorf("badger line at %v, want debug or warn: %q", e.level, e.msg)
		}
		if strings.HasSuffix(e.msg, "\n") {
			t.Errorf("badger line keeps its newline: %q", e.msg)
		}
	}
	if badgerLines == 0 {
		t.Fatalf("no badger lines among %d log records; is the logger wired?", len(sink.entries))
	}
	t.Logf("%d badger lines routed", badgerLines)
}

func TestValueLogGCLoop(t *testing.T) {
	cfg := testConfig(t)
	cfg.GCInterval = 10 * time.Millisecond
	s, err := store.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	mustPut(t, s, "k", strings.Repeat("v", 64<<10))
	waitFor(t, 10*time.Second, "two GC passes", func() bool { return s.GCPassesForTest() >= 2 })
	// Close waits for the loop; under -race a pass still running would race
	// with Badger's shutdown.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestValueLogGCDisabled(t *testing.T) {
	cfg := testConfig(t)
	cfg.GCInterval = 0
	s := openStore(t, cfg)
	mustPut(t, s, "k", "v")
	if n := s.GCPassesForTest(); n != 0 {
		t.Fatalf("GC passes with GCInterval 0 = %d, want 0", n)
	}
}
