package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ringkv/ringkv/daemon/client"
)

func TestInitCreatesDataDirOnce(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	r := run(t, "", "init", "--data-dir", dir, "-o", "json")
	if r.code != 0 {
		t.Fatalf("init: exit %d: %s", r.code, r.stderr)
	}
	var out struct {
		PeerID string `json:"peer_id"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil || !strings.HasPrefix(out.PeerID, "12D3Koo") {
		t.Fatalf("init output %q: want a JSON peer_id of an Ed25519 key (%v)", r.stdout, err)
	}
	st, err := os.Stat(filepath.Join(dir, "identity.key"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("identity.key: %v, mode %v; want mode 0600", err, st.Mode())
	}
	cfg, err := os.ReadFile(filepath.Join(dir, "config.toml"))
	if err != nil || !strings.Contains(string(cfg), "write_quorum = 2") || !strings.Contains(string(cfg), "# ") {
		t.Fatalf("config.toml should hold every default with comments: %v\n%s", err, cfg)
	}
	again := run(t, "", "init", "--data-dir", dir)
	if again.code != 1 || !strings.Contains(again.stderr, "already has an identity") {
		t.Fatalf("second init: exit %d %q; want exit 1 refusing to overwrite", again.code, again.stderr)
	}
	key2, _ := os.ReadFile(filepath.Join(dir, "identity.key"))
	id := run(t, "", "id", "--data-dir", dir, "-o", "json")
	if !strings.Contains(id.stdout, out.PeerID) || len(key2) == 0 {
		t.Fatalf("identity changed or unreadable after refused init: %q", id.stdout)
	}
}

func TestPutGetDeleteThroughCLI(t *testing.T) {
	n := startNode(t, filepath.Join(t.TempDir(), "n1"), "--replicas", "1", "--write-quorum", "1", "--read-quorum", "1")
	if r := n.cli("", "put", "greeting", "hello world"); r.code != 0 || strings.TrimSpace(r.stdout) != "OK" {
		t.Fatalf("put: exit %d out %q err %q", r.code, r.stdout, r.stderr)
	}
	if r := n.cli("", "get", "greeting"); r.code != 0 || r.stdout != "hello world" {
		t.Fatalf("get: exit %d out %q err %q; want the raw value", r.code, r.stdout, r.stderr)
	}
	if r := n.cli("from stdin\n", "put", "k2", "-"); r.code != 0 {
		t.Fatalf("put from stdin: %d %s", r.code, r.stderr)
	}
	if r := n.cli("", "get", "k2"); r.stdout != "from stdin\n" {
		t.Fatalf("get k2 = %q", r.stdout)
	}
	file := filepath.Join(t.TempDir(), "v.bin")
	os.WriteFile(file, []byte{0, 1, 2, 255}, 0o644)
	if r := n.cli("", "put", "bin/key with spaces", "--file", file); r.code != 0 {
		t.Fatalf("put --file: %d %s", r.code, r.stderr)
	}
	if r := n.cli("", "get", "bin/key with spaces"); r.stdout != string([]byte{0, 1, 2, 255}) {
		t.Fatalf("binary value round trip: %q", r.stdout)
	}
	r := n.cli("", "get", "greeting", "-o", "json")
	var gr client.GetResponse
	if err := json.Unmarshal([]byte(r.stdout), &gr); err != nil || len(gr.Siblings) != 1 || gr.Siblings[0].Value != "hello world" || gr.Context == "" {
		t.Fatalf("get -o json: %q (%v); want one sibling and a context", r.stdout, err)
	}
	if r := n.cli("", "delete", "greeting"); r.code != 0 {
		t.Fatalf("delete: %d %s", r.code, r.stderr)
	}
	if r := n.cli("", "get", "greeting"); r.code != 4 || !strings.Contains(r.stderr, "not found") || strings.Count(r.stderr, "\n") != 1 {
		t.Fatalf("get deleted key: exit %d %q; want exit 4 and one line", r.code, r.stderr)
	}
	gone, err := n.client().Get(context.Background(), []byte("greeting"), client.ReadOptions{})
	if !errors.Is(err, client.ErrNotFound) || gone.Answered != 1 || gone.Hinted != 0 {
		t.Fatalf("API get of a deleted key: %+v %v; want not found, answered by the one replica", gone, err)
	}
	// A TTL: the sibling and the key show their expiry; once it passes the
	// key reads as not found, and a new put brings it back without it.
	before := time.Now()
	if r := n.cli("", "put", "session", "s1", "--ttl", "2s"); r.code != 0 {
		t.Fatalf("put --ttl: %d %s", r.code, r.stderr)
	}
	r = n.cli("", "get", "session", "-o", "json")
	gr = client.GetResponse{}
	if err := json.Unmarshal([]byte(r.stdout), &gr); err != nil || len(gr.Siblings) != 1 || gr.Siblings[0].ExpiresAt == nil || gr.ExpiresAt == nil ||
		!gr.Siblings[0].ExpiresAt.Equal(*gr.ExpiresAt) || gr.ExpiresAt.Before(before.Add(2*time.Second)) || gr.ExpiresAt.After(time.Now().Add(2*time.Second)) {
		t.Fatalf("get -o json of a key put with --ttl 2s: %q (%v); want its expiry on the sibling and the key", r.stdout, err)
	}
	waitFor(t, 10*time.Second, "the key put with --ttl 2s to expire", func() bool {
		return n.cli("", "get", "session").code == 4
	})
	if r := n.cli("", "put", "session", "s2"); r.code != 0 {
		t.Fatalf("put after expiry: %d %s", r.code, r.stderr)
	}
	r = n.cli("", "get", "session", "-o", "json")
	gr = client.GetResponse{}
	if err := json.Unmarshal([]byte(r.stdout), &gr); err != nil || len(gr.Siblings) != 1 || gr.Siblings[0].Value != "s2" || gr.Siblings[0].ExpiresAt != nil || gr.ExpiresAt != nil {
		t.Fatalf("get after a put without TTL over the expired key: %q (%v); want s2 alone, no expiry", r.stdout, err)
	}
	for _, k := range []string{".", "..", "a/b", "%2F", "ü"} {
		if r := n.cli("", "put", k, "v-"+k); r.code != 0 {
			t.Fatalf("put %q: %d %s", k, r.code, r.stderr)
		}
		if r := n.cli("", "get", k); r.stdout != "v-"+k {
			t.Fatalf("get %q = %q %q", k, r.stdout, r.stderr)
		}
	}
	for _, cmd := range [][]string{{"status"}, {"peers"}, {"id"}, {"members"}, {"ring"}, {"version"}, {"locate", "k2"}} {
		r := n.cli("", append(cmd, "-o", "json")...)
		if r.code != 0 || !json.Valid([]byte(r.stdout)) {
			t.Fatalf("%v -o json: exit %d, output %q, stderr %q", cmd, r.code, r.stdout, r.stderr)
		}
	}
}

// TestBadInputChangesNothing sends every bad request the API must refuse
// and checks the status, the one-line JSON error, and that nothing was
// written.
func TestBadInputChangesNothing(t *testing.T) {
	n := startNode(t, filepath.Join(t.TempDir(), "n1"), "--replicas", "1", "--write-quorum", "1", "--read-quorum", "1",
		"--max-value-size", "1048576")
	base := "http://" + n.api
	long := strings.Repeat("k", 1025)
	cases := []struct {
		name, method, path string
		body               io.Reader
		status             int
	}{
		{"empty key", "PUT", "/v1/kv/", strings.NewReader("v"), 400},
		{"key over 1 KiB", "PUT", "/v1/kv/" + long, strings.NewReader("v"), 400},
		{"value over 1 MiB", "PUT", "/v1/kv/big", strings.NewReader(strings.Repeat("x", 1<<20+1)), 413},
		{"wrong method", "POST", "/v1/kv/k", strings.NewReader("v"), 405},
		{"wrong method on status", "DELETE", "/v1/status", nil, 405},
		{"bad quorum", "PUT", "/v1/kv/q?w=9", strings.NewReader("v"), 400},
		{"bad consistency", "PUT", "/v1/kv/q?consistency=most", strings.NewReader("v"), 400},
		{"bad ttl", "PUT", "/v1/kv/q?ttl=soon", strings.NewReader("v"), 400},
		{"ttl over 100 years", "PUT", "/v1/kv/q?ttl=2500000h", strings.NewReader("v"), 400},
		{"unknown endpoint", "GET", "/v2/kv/k", nil, 404},
	}
	for _, c := range cases {
		req, _ := http.NewRequest(c.method, base+c.path, c.body)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var eb client.ErrorBody
		if resp.StatusCode != c.status || json.Unmarshal(b, &eb) != nil || eb.Error == "" || strings.Contains(eb.Error, "\n") {
			t.Errorf("%s: status %d body %q; want %d and a one-line JSON error", c.name, resp.StatusCode, b, c.status)
		}
	}
	req, _ := http.NewRequest("PUT", base+"/v1/kv/ctx", strings.NewReader("v"))
	req.Header.Set(client.HeaderContext, "not-a-context")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 400 {
		t.Errorf("malformed causal context: %v %v; want 400", resp.Status, err)
	}
	// The same refusals through the CLI: arguments only the daemon can
	// check are usage errors too.
	bigFile := filepath.Join(t.TempDir(), "big")
	if err := os.WriteFile(bigFile, []byte(strings.Repeat("x", 1<<20+1)), 0o644); err != nil {
		t.Fatal(err)
	}
	cliCases := []struct {
		name string
		args []string
		want string
	}{
		{"quorum over N", []string{"put", "q", "v", "--w", "2"}, "from 1 to 1"},
		{"read quorum over N", []string{"get", "q", "--r", "3"}, "from 1 to 1"},
		{"key over 1 KiB", []string{"put", long, "v"}, "1024"},
		{"value over max_value_size", []string{"put", "big", "--file", bigFile}, "max_value_size"},
		{"malformed context", []string{"put", "ctx", "v", "--context", "not-a-context"}, "context"},
	}
	for _, c := range cliCases {
		if r := n.cli("", c.args...); r.code != 2 || !strings.Contains(r.stderr, c.want) || !oneLine(r) {
			t.Errorf("ringkv %s: exit %d stderr %q; want exit 2 naming %q on one line", c.name, r.code, r.stderr, c.want)
		}
	}
	st := n.status()
	if st.Keys != 0 {
		t.Fatalf("rejected requests wrote %d keys", st.Keys)
	}
	for _, k := range []string{"big", "q", "k", "ctx"} {
		if _, err := n.client().Get(context.Background(), []byte(k), client.ReadOptions{}); !errors.Is(err, client.ErrNotFound) {
			t.Errorf("key %q after a rejected request: %v; want not found", k, err)
		}
	}
}

func TestCLIUsageAndConfigErrors(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "d")
	if r := run(t, "", "init", "--data-dir", dir); r.code != 0 {
		t.Fatal(r.stderr)
	}
	cases := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"unknown flag", []string{"put", "k", "v", "--bogus"}, 2, "--bogus"},
		{"unknown command", []string{"frobnicate"}, 2, "frobnicate"},
		{"missing value", []string{"put", "k"}, 2, "VALUE"},
		{"bad output format", []string{"status", "-o", "yaml"}, 2, "yaml"},
		{"bad quorum value", []string{"daemon", "--data-dir", dir, "--write-quorum", "7"}, 2, "write_quorum"},
		{"bad listen addr", []string{"daemon", "--data-dir", dir, "--listen", "nonsense"}, 2, "listen"},
		{"bad bootstrap addr", []string{"daemon", "--data-dir", dir, "--bootstrap", "/ip4/1.2.3.4/tcp/1"}, 2, "/p2p/"},
		{"bad flag type", []string{"daemon", "--data-dir", dir, "--sync=maybe"}, 2, "sync"},
		{"bootstrap add bad", []string{"bootstrap", "add", "garbage", "--data-dir", dir}, 2, "garbage"},
		{"zero write quorum", []string{"put", "k", "v", "--w", "0"}, 2, "--w 0"},
		{"negative read quorum", []string{"get", "k", "--r", "-1"}, 2, "--r -1"},
		{"zero ttl", []string{"put", "k", "v", "--ttl", "0s"}, 2, "--ttl 0s"},
		{"negative ttl", []string{"put", "k", "v", "--ttl", "-5s"}, 2, "positive duration"},
	}
	for _, c := range cases {
		r := run(t, "", c.args...)
		if r.code != c.code || !strings.Contains(r.stderr, c.want) || !oneLine(r) {
			t.Errorf("%s: exit %d stderr %q; want exit %d naming %q on one line", c.name, r.code, r.stderr, c.code, c.want)
		}
	}
	env := runEnv(t, []string{"RINGKV_WRITE_QUORUM=seven"}, "daemon", "--data-dir", dir)
	if env.code != 2 || !strings.Contains(env.stderr, "write_quorum") {
		t.Errorf("bad env value: exit %d %q", env.code, env.stderr)
	}
	os.WriteFile(filepath.Join(dir, "config.toml"), []byte("replicas = 3\nwrite_quorum = = 2\n"), 0o644)
	if r := run(t, "", "daemon", "--data-dir", dir); r.code != 2 || !strings.Contains(r.stderr, "line 2") {
		t.Errorf("corrupt config.toml: exit %d %q; want exit 2 naming line 2", r.code, r.stderr)
	}
	os.WriteFile(filepath.Join(dir, "config.toml"), []byte("replica_count = 3\n"), 0o644)
	if r := run(t, "", "daemon", "--data-dir", dir); r.code != 2 || !strings.Contains(r.stderr, "replica_count") {
		t.Errorf("unknown config key: exit %d %q", r.code, r.stderr)
	}
	if os.Geteuid() != 0 {
		locked := filepath.Join(t.TempDir(), "locked")
		os.Mkdir(locked, 0o000)
		if r := run(t, "", "daemon", "--data-dir", filepath.Join(locked, "d")); r.code != 1 || !strings.Contains(r.stderr, locked) {
			t.Errorf("unreadable data dir: exit %d %q; want exit 1 naming the dir", r.code, r.stderr)
		}
	}
	unreach := run(t, "", "--api", "127.0.0.1:1", "get", "k")
	if unreach.code != 3 || !oneLine(unreach) {
		t.Errorf("daemon unreachable: exit %d %q; want exit 3", unreach.code, unreach.stderr)
	}
	noDaemon := run(t, "", "--data-dir", filepath.Join(t.TempDir(), "none"), "status")
	if noDaemon.code != 3 || !strings.Contains(noDaemon.stderr, "ringkv daemon") {
		t.Errorf("no api file: exit %d %q", noDaemon.code, noDaemon.stderr)
	}
}

// runEnv runs the CLI with extra environment variables.
func runEnv(t *testing.T, env []string, args ...string) result {
	t.Helper()
	return runWith(t, env, "", args...)
}

func TestSecondDaemonOnSameDataDirFails(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "n1")
	n := startNode(t, dir)
	r := run(t, "", "daemon", "--data-dir", dir, "--listen", "/ip4/127.0.0.1/tcp/0", "--api", "127.0.0.1:0")
	if r.code != 1 || !strings.Contains(r.stderr, dir) || !strings.Contains(r.stderr, n.api) || !strings.Contains(r.stderr, "pid") {
		t.Fatalf("second daemon: exit %d %q; want exit 1 naming the dir, the running daemon's pid and api", r.code, r.stderr)
	}
	if ok, _, err := n.client().Ready(context.Background()); !ok || err != nil {
		t.Fatalf("the first daemon must keep running: %v", err)
	}
}

// TestStaleDataDirRefused: a daemon does not start on a data dir last up
// longer ago than its peers keep a dead member (a minute with local
// timings), here ten minutes by its clock, and the data dir is left as it
// was: the next start on time finds its data.
func TestStaleDataDirRefused(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "n1")
	n := startNode(t, dir, "--replicas", "1", "--write-quorum", "1", "--read-quorum", "1")
	if r := n.cli("", "put", "k", "v"); r.code != 0 {
		t.Fatalf("put: exit %d %s", r.code, r.stderr)
	}
	n.stop()
	r := runWith(t, []string{"RINGKV_TEST_CLOCK_OFFSET=10m"}, "", n.args...)
	lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
	last := lines[len(lines)-1]
	if r.code != 6 || !strings.Contains(last, "stale data dir") || !strings.Contains(last, "--allow-stale-rejoin") {
		t.Fatalf("daemon ten minutes after it stopped: exit %d, stderr %q; want exit 6 and one line naming --allow-stale-rejoin", r.code, r.stderr)
	}
	n.start()
	if r := n.cli("", "get", "k"); r.code != 0 || strings.TrimSpace(r.stdout) != "v" {
		t.Fatalf("get after the refused start: exit %d %q %s", r.code, r.stdout, r.stderr)
	}
}

// TestKill9KeepsAcknowledgedWrites acknowledges 1,000 puts, kills the
// daemon with SIGKILL and restarts it: every write must be there.
func TestKill9KeepsAcknowledgedWrites(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "n1")
	n := startNode(t, dir, "--replicas", "1", "--write-quorum", "1", "--read-quorum", "1")
	cl := n.client()
	ctx := context.Background()
	for i := 0; i < 1000; i++ {
		if _, err := cl.Put(ctx, []byte(fmt.Sprintf("key-%d", i)), []byte(fmt.Sprintf("value-%d", i)), client.WriteOptions{}); err != nil {
			t.Fatalf("put %d: %v", i, err)
		}
	}
	n.kill()
	n.start()
	cl = n.client()
	for i := 0; i < 1000; i++ {
		v, err := cl.GetValue(ctx, []byte(fmt.Sprintf("key-%d", i)), client.ReadOptions{})
		if err != nil || string(v) != fmt.Sprintf("value-%d", i) {
			t.Fatalf("after kill -9, key-%d = %q, %v", i, v, err)
		}
	}
}

func TestTwoDaemonsConnectThroughBootstrap(t *testing.T) {
	a := startNode(t, filepath.Join(t.TempDir(), "a"))
	b := startNode(t, filepath.Join(t.TempDir(), "b"), "--bootstrap", a.bootstrapAddr())
	aid, bid := a.status().PeerID, b.status().PeerID
	waitFor(t, 20*time.Second, "each daemon lists the other in peers", func() bool {
		return strings.Contains(a.cli("", "peers").stdout, bid) && strings.Contains(b.cli("", "peers").stdout, aid)
	})
}

// TestBenchAgainstADaemon runs `ringkv bench` through the CLI, over the
// wire protocol and over HTTP: puts store values the API then reads back,
// gets find them, and the JSON result counts every operation.
func TestBenchAgainstADaemon(t *testing.T) {
	n := startNode(t, filepath.Join(t.TempDir(), "n1"), "--replicas", "1", "--write-quorum", "1", "--read-quorum", "1")
	var res struct {
		Op        string  `json:"op"`
		Protocol  string  `json:"protocol"`
		Ops       int64   `json:"ops"`
		Errors    int64   `json:"errors"`
		Misses    int64   `json:"misses"`
		OpsPerSec float64 `json:"ops_per_sec"`
		P50ms     float64 `json:"p50_ms"`
	}
	for _, proto := range []string{"wire", "http"} {
		for _, args := range [][]string{
			{"bench", "--op", "put", "-c", "4", "-n", "200", "--keys", "50", "--value-size", "10", "-o", "json", "--protocol", proto},
			{"bench", "--op", "get", "-c", "4", "-n", "200", "--keys", "50", "--no-fill", "-o", "json", "--protocol", proto},
			{"bench", "--op", "ping", "-c", "4", "-n", "200", "-o", "json", "--protocol", proto},
		} {
			r := n.cli("", args...)
			if r.code != 0 || json.Unmarshal([]byte(r.stdout), &res) != nil {
				t.Fatalf("%v: exit %d out %q err %q", args, r.code, r.stdout, r.stderr)
			}
			if res.Op != args[2] || res.Protocol != proto || res.Ops != 200 || res.Errors != 0 || res.Misses != 0 || res.OpsPerSec <= 0 || res.P50ms <= 0 {
				t.Fatalf("%v: %+v; want 200 operations, no error, no miss", args, res)
			}
		}
	}
	got, err := n.client().Get(context.Background(), []byte("bench:7"), client.ReadOptions{})
	if err != nil || len(got.Siblings) != 1 || len(got.Siblings[0].Value) != 10 {
		t.Fatalf("bench:7 after the put run: %+v, %v; want one 10-byte value", got, err)
	}
	if r := n.cli("", "bench", "--op", "get", "-c", "1", "-n", "5", "--key-prefix", "never-written:", "--no-fill", "-o", "json"); r.code != 0 ||
		json.Unmarshal([]byte(r.stdout), &res) != nil || res.Misses != 5 {
		t.Fatalf("bench over missing keys: exit %d %+v; want 5 misses", r.code, res)
	}
	if r := run(t, "", "--api", "127.0.0.1:1", "bench", "-n", "3", "--no-fill"); r.code != 3 || strings.Count(r.stderr, "\n") != 1 {
		t.Fatalf("bench with no daemon: exit %d %q; want exit 3 and one line", r.code, r.stderr)
	}
	if r := run(t, "", "--api", "https://127.0.0.1:1", "bench", "-n", "3"); r.code != 2 || !strings.Contains(r.stderr, "plain HTTP") {
		t.Fatalf("bench on an https address: exit %d %q; want exit 2 saying why", r.code, r.stderr)
	}
	for _, bad := range [][]string{{"--protocol", "grpc"}, {"--conns", "0"}, {"--op", "pong"}} {
		if r := n.cli("", append([]string{"bench", "-n", "3"}, bad...)...); r.code != 2 || strings.Count(r.stderr, "\n") != 1 || !strings.Contains(r.stderr, bad[0]) {
			t.Fatalf("bench %v: exit %d %q; want exit 2 and one line naming the flag", bad, r.code, r.stderr)
		}
	}
}
