package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ringkv/ringkv/daemon/client"
)

// These tests drive the real binary: they build it once, start daemons as
// processes in temporary data dirs on loopback, and talk to them through
// the CLI and the HTTP API.

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ringkv-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "ringkv")
	build := exec.Command("go", "build", "-race", "-o", binary, ".")
	if os.Getenv("RINGKV_TEST_NORACE") != "" {
		build = exec.Command("go", "build", "-o", binary, ".")
	}
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building ringkv:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// result is one CLI run.
type result struct {
	code           int
	stdout, stderr string
}

// oneLine reports an error printed as the CLI promises: one line on
// stderr, starting "ringkv: ".
func oneLine(r result) bool {
	return strings.Count(r.stderr, "\n") == 1 && strings.HasPrefix(r.stderr, "ringkv: ")
}

// run executes the CLI with args and a clean environment.
func run(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	return runWith(t, nil, stdin, args...)
}

// runWith executes the CLI with extra environment variables.
func runWith(t *testing.T, env []string, stdin string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = append(cleanEnv(), env...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	res := result{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		res.code = ee.ExitCode()
	case err != nil:
		t.Fatalf("running ringkv %v: %v", args, err)
	}
	return res
}

func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "RINGKV_") && !strings.HasPrefix(kv, "HOME=") {
			env = append(env, kv)
		}
	}
	return append(env, "HOME="+os.TempDir())
}

// node is a daemon process.
type node struct {
	t       *testing.T
	dir     string
	cmd     *exec.Cmd
	logs    *syncBuffer
	api     string
	args    []string
	stopped bool
}

// startNode starts `ringkv daemon` on dir with loopback addresses and
// waits until its API answers /readyz.
func startNode(t *testing.T, dir string, extra ...string) *node {
	t.Helper()
	n := &node{t: t, dir: dir, logs: &syncBuffer{}}
	n.args = append([]string{"daemon", "--data-dir", dir, "--listen", "/ip4/127.0.0.1/tcp/0",
		"--api", "127.0.0.1:0", "--timing", "local", "--log-level", "debug"}, extra...)
	n.start()
	t.Cleanup(n.stop)
	return n
}

func (n *node) start() {
	n.t.Helper()
	os.Remove(filepath.Join(n.dir, "api"))
	n.cmd = exec.Command(binary, n.args...)
	n.cmd.Env = cleanEnv()
	n.cmd.Stdout, n.cmd.Stderr = n.logs, n.logs
	if err := n.cmd.Start(); err != nil {
		n.t.Fatalf("starting daemon: %v", err)
	}
	n.stopped = false
	waitFor(n.t, 30*time.Second, "daemon API file", func() bool {
		b, err := os.ReadFile(filepath.Join(n.dir, "api"))
		if err != nil {
			return false
		}
		n.api = strings.TrimSpace(string(b))
		return n.api != ""
	})
	cl := n.client()
	waitFor(n.t, 30*time.Second, "daemon ready", func() bool {
		ok, _, err := cl.Ready(context.Background())
		return err == nil && ok
	})
}

func (n *node) client() *client.Client { return client.New(n.api, 8) }

// stop sends SIGTERM and waits for a clean exit.
func (n *node) stop() {
	if n.stopped || n.cmd == nil || n.cmd.Process == nil {
		return
	}
	n.stopped = true
	n.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- n.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil && !n.t.Failed() {
			n.t.Errorf("daemon exited with %v; log:\n%s", err, n.logs.String())
		}
	case <-time.After(30 * time.Second):
		n.cmd.Process.Kill()
		<-done
		n.t.Errorf("daemon did not stop within 30s after SIGTERM")
	}
}

// kill sends SIGKILL: no shutdown, no flush.
func (n *node) kill() {
	n.stopped = true
	n.cmd.Process.Kill()
	n.cmd.Wait()
}

// cli runs a CLI command against this node's API.
func (n *node) cli(stdin string, args ...string) result {
	n.t.Helper()
	return run(n.t, stdin, append([]string{"--api", n.api}, args...)...)
}

// peerID asks the node for its peer ID.
func (n *node) status() client.Status {
	n.t.Helper()
	s, err := n.client().Status(context.Background())
	if err != nil {
		n.t.Fatalf("status: %v", err)
	}
	return s
}

// bootstrapAddr is a multiaddr other nodes can pass to --bootstrap.
func (n *node) bootstrapAddr() string {
	n.t.Helper()
	for _, a := range n.status().Addrs {
		if strings.HasPrefix(a, "/ip4/127.0.0.1/tcp/") {
			return a
		}
	}
	n.t.Fatalf("node has no loopback TCP address: %v", n.status().Addrs)
	return ""
}

// syncBuffer collects a daemon's output, written by exec's copying
// goroutine while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// waitFor polls cond until it holds or the bound passes.
func waitFor(t *testing.T, bound time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(bound)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", bound, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
