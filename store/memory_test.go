package store_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"

	"github.com/ringkv/ringkv/dht"
	"github.com/ringkv/ringkv/store"
)

// rssChildEnv switches TestMemoryRSS into its measuring child process.
const rssChildEnv = "RINGKV_STORE_RSS_CHILD"

// TestMemoryRSS measures the resident memory of a process that opens a
// store with DefaultConfig: idle and empty, then after writing and scanning
// 32 MiB. It runs in a fresh child process, so that what earlier tests left
// behind does not count. The bounds are memory bounds, not timings.
func TestMemoryRSS(t *testing.T) {
	if os.Getenv(rssChildEnv) != "" {
		rssChild(t)
		return
	}
	if _, err := os.Stat("/proc/self/status"); err != nil {
		t.Skip("needs /proc/self/status")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestMemoryRSS$", "-test.v")
	cmd.Env = append(os.Environ(), rssChildEnv+"="+t.TempDir())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	fig := map[string]int64{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "RSS "); ok {
			name, kib, _ := strings.Cut(rest, "=")
			n, _ := strconv.ParseInt(strings.TrimSuffix(kib, "KiB"), 10, 64)
			fig[name] = n
		}
	}
	if len(fig) != 3 {
		t.Fatalf("child reported %v\n%s", fig, out)
	}
	t.Logf("VmRSS: test binary %d KiB; with empty store open and idle %d KiB; after 32 MiB written and scanned %d KiB",
		fig["baseline"], fig["idle"], fig["busy"])
	const idleLimit, busyLimit = 64 << 10, 160 << 10 // KiB
	if fig["idle"] >= idleLimit {
		t.Errorf("idle empty store: VmRSS %d KiB, want < %d KiB", fig["idle"], idleLimit)
	}
	// The race detector's shadow memory grows with every allocation, so the
	// busy figure only means something without it.
	if !raceEnabled && fig["busy"] >= busyLimit {
		t.Errorf("after writes: VmRSS %d KiB, want < %d KiB", fig["busy"], busyLimit)
	}
}

// rssChild is the measuring side of TestMemoryRSS. It prints "RSS name=NKiB"
// lines for the parent.
func rssChild(t *testing.T) {
	ctx := context.Background()
	report := func(name string) {
		debug.FreeOSMemory()
		kib, err := vmRSS()
		if err != nil {
			t.Fatal(err)
		}
		fmt.Printf("RSS %s=%dKiB\n", name, kib)
	}
	report("baseline")
	cfg := store.DefaultConfig(os.Getenv(rssChildEnv))
	cfg.Logger = nil
	s, err := store.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	report("idle")

	value := bytes.Repeat([]byte("v"), 1000) // inline in the LSM tree
	batch := make([]dht.Entry, 256)
	for b := range 128 { // 128 × 256 × 1000 B ≈ 32 MiB
		for i := range batch {
			batch[i] = dht.Entry{
				Key:    fmt.Appendf(nil, "key-%03d-%03d", b, i),
				Record: dht.Record{Versions: []dht.Version{{Value: value}}},
			}
		}
		if err := s.PutBatch(ctx, batch); err != nil {
			t.Fatal(err)
		}
	}
	n := 0
	if err := s.Scan(ctx, nil, nil, func([]byte, dht.Record) error { n++; return nil }); err != nil || n != 128*256 {
		t.Fatalf("scan: %d records, %v", n, err)
	}
	report("busy")
}

// vmRSS returns this process's resident set size in KiB.
func vmRSS() (int64, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/self/status")
}
