package clustertest

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ringkv/ringkv/daemon/client"
)

// hist builds hand-made histories: each call appends one op with the next
// ID, invoked one second after the previous op and lasting half a second.
type hist struct {
	ops []Op
}

func (h *hist) add(op Op) int64 {
	op.ID = int64(len(h.ops) + 1)
	op.Invoke = time.Duration(op.ID) * time.Second
	op.Complete = op.Invoke + 500*time.Millisecond
	if op.Result == "" {
		op.Result = ResultOK
	}
	h.ops = append(h.ops, op)
	return op.ID
}

func (h *hist) put(key, value string, ctxFrom int64, res Result) int64 {
	return h.add(Op{Kind: KindPut, Key: key, Value: value, CtxFrom: ctxFrom, Result: res})
}

func (h *hist) del(key string, ctxFrom int64, res Result) int64 {
	return h.add(Op{Kind: KindDelete, Key: key, CtxFrom: ctxFrom, Result: res})
}

func (h *hist) get(key string, values ...string) int64 {
	return h.add(Op{Kind: KindGet, Key: key, Values: values})
}

// final reads key through every one of nodes, each returning values.
func (h *hist) final(nodes int, key string, values ...string) {
	for n := 0; n < nodes; n++ {
		h.add(Op{Kind: KindGet, Key: key, Node: n, Values: values, Final: true})
	}
}

// checkCase is a hand-made history and what the checker must find in it.
type checkCase struct {
	name        string
	build       func(h *hist)
	lost        []string // values reported lost
	phantoms    []string // values reported phantom
	resurrected []string
	excused     int
	unverified  int
}

var checkCases = []checkCase{
	{
		name: "present write is not lost",
		build: func(h *hist) {
			h.put("a", "a1", 0, ResultOK)
			h.final(3, "a", "a1")
		},
	},
	{
		name: "lost write is caught",
		build: func(h *hist) {
			h.put("a", "a1", 0, ResultOK)
			h.final(3, "a")
		},
		lost: []string{"a1"},
	},
	{
		name: "write missing on one node only is caught",
		build: func(h *hist) {
			h.put("a", "a1", 0, ResultOK)
			h.add(Op{Kind: KindGet, Key: "a", Node: 0, Values: []string{"a1"}, Final: true})
			h.add(Op{Kind: KindGet, Key: "a", Node: 1, Values: []string{"a1"}, Final: true})
			h.add(Op{Kind: KindGet, Key: "a", Node: 2, Final: true})
		},
		lost: []string{"a1"},
	},
	{
		name: "unacknowledged writes may be lost",
		build: func(h *hist) {
			h.put("a", "a1", 0, ResultUnknown)
			h.put("a", "a2", 0, ResultFail)
			h.final(3, "a")
		},
	},
	{
		name: "siblings count as present",
		build: func(h *hist) {
			h.put("h", "h1", 0, ResultOK)
			h.put("h", "h2", 0, ResultOK)
			h.final(3, "h", "h2", "h1")
		},
	},
	{
		name: "write superseded by an acknowledged write with its context is not reported",
		build: func(h *hist) {
			h.put("h", "h1", 0, ResultOK)
			h.put("h", "h2", 0, ResultOK)
			r := h.get("h", "h1", "h2")
			h.put("h", "h3", r, ResultOK)
			h.final(3, "h", "h3")
		},
	},
	{
		name: "context covers only what the read returned",
		build: func(h *hist) {
			h.put("h", "h1", 0, ResultOK)
			h.put("h", "h2", 0, ResultOK)
			r := h.get("h", "h1")
			h.put("h", "h3", r, ResultOK)
			h.final(3, "h", "h3")
		},
		lost: []string{"h2"},
	},
	{
		name: "write superseded by an acknowledged delete is not reported",
		build: func(h *hist) {
			h.put("d", "d1", 0, ResultOK)
			r := h.get("d", "d1")
			h.del("d", r, ResultOK)
			h.final(3, "d")
		},
	},
	{
		name: "unknown put supersedes once its value was seen",
		build: func(h *hist) {
			h.put("h", "h1", 0, ResultOK)
			r := h.get("h", "h1")
			h.put("h", "h2", r, ResultUnknown)
			h.final(3, "h", "h2")
		},
	},
	{
		name: "unknown put never seen does not excuse a missing write",
		build: func(h *hist) {
			h.put("h", "h1", 0, ResultOK)
			r := h.get("h", "h1")
			h.put("h", "h2", r, ResultUnknown)
			h.final(3, "h")
		},
		lost: []string{"h1"},
	},
	{
		name: "failed put never supersedes",
		build: func(h *hist) {
			h.put("h", "h1", 0, ResultOK)
			r := h.get("h", "h1")
			h.put("h", "h2", r, ResultFail)
			h.final(3, "h")
		},
		lost: []string{"h1"},
	},
	{
		name: "unknown delete excuses, counted apart",
		build: func(h *hist) {
			h.put("d", "d1", 0, ResultOK)
			r := h.get("d", "d1")
			h.del("d", r, ResultUnknown)
			h.final(3, "d")
		},
		excused: 1,
	},
	{
		name: "phantom value never written is caught",
		build: func(h *hist) {
			h.put("a", "a1", 0, ResultOK)
			h.get("a", "a1", "zz")
			h.final(3, "a", "a1")
		},
		phantoms: []string{"zz"},
	},
	{
		name: "value of a failed write is a phantom",
		build: func(h *hist) {
			h.put("a", "a1", 0, ResultFail)
			h.final(3, "a", "a1")
		},
		phantoms: []string{"a1", "a1", "a1"},
	},
	{
		name: "value of another key is a phantom",
		build: func(h *hist) {
			h.put("a", "a1", 0, ResultOK)
			h.get("b", "a1")
			h.final(3, "a", "a1")
		},
		phantoms: []string{"a1"},
	},
	{
		name: "value read before its write was invoked is a phantom",
		build: func(h *hist) {
			h.get("a", "a1")
			h.put("a", "a1", 0, ResultOK)
			h.final(3, "a", "a1")
		},
		phantoms: []string{"a1"},
	},
	{
		name: "value of an unknown write is not a phantom",
		build: func(h *hist) {
			h.put("a", "a1", 0, ResultUnknown)
			h.final(3, "a", "a1")
		},
	},
	{
		name: "acknowledged delete that comes back is a resurrection",
		build: func(h *hist) {
			h.put("d", "d1", 0, ResultOK)
			r := h.get("d", "d1")
			h.del("d", r, ResultOK)
			h.final(3, "d", "d1")
		},
		resurrected: []string{"d1"},
	},
	{
		name: "concurrent put revives a deleted key without resurrection",
		build: func(h *hist) {
			h.put("d", "d1", 0, ResultOK)
			r := h.get("d", "d1")
			h.put("d", "d2", 0, ResultOK)
			h.del("d", r, ResultOK)
			h.final(3, "d", "d2")
		},
	},
	{
		name: "key not read through every node is unverified",
		build: func(h *hist) {
			h.put("a", "a1", 0, ResultOK)
			h.add(Op{Kind: KindGet, Key: "a", Node: 0, Values: []string{"a1"}, Final: true})
			h.add(Op{Kind: KindGet, Key: "a", Node: 1, Values: []string{"a1"}, Final: true})
			h.add(Op{Kind: KindGet, Key: "a", Node: 2, Final: true, Result: ResultFail})
		},
		unverified: 1,
	},
}

func TestCheck(t *testing.T) {
	for _, tt := range checkCases {
		t.Run(tt.name, func(t *testing.T) {
			h := &hist{}
			tt.build(h)
			r := Check(Input{Ops: h.ops, Nodes: 3})
			var lost, phantoms, res []string
			for _, l := range r.Lost {
				lost = append(lost, l.Write.Value)
			}
			for _, p := range r.Phantoms {
				phantoms = append(phantoms, p.Value)
			}
			for _, x := range r.Resurrected {
				res = append(res, x.Value)
			}
			if !slices.Equal(lost, tt.lost) {
				t.Errorf("lost = %v, want %v\n%s", lost, tt.lost, r.Details(10))
			}
			if !slices.Equal(phantoms, tt.phantoms) {
				t.Errorf("phantoms = %v, want %v\n%s", phantoms, tt.phantoms, r.Details(10))
			}
			if !slices.Equal(res, tt.resurrected) {
				t.Errorf("resurrected = %v, want %v\n%s", res, tt.resurrected, r.Details(10))
			}
			if r.ExcusedByUnknownDelete != tt.excused {
				t.Errorf("excused = %d, want %d", r.ExcusedByUnknownDelete, tt.excused)
			}
			if len(r.Unverified) != tt.unverified {
				t.Errorf("unverified = %v, want %d", r.Unverified, tt.unverified)
			}
			wantOK := tt.lost == nil && tt.phantoms == nil && tt.resurrected == nil && tt.unverified == 0
			if r.OK() != wantOK {
				t.Errorf("OK() = %v, want %v; %s", r.OK(), wantOK, r.Summary())
			}
		})
	}
}

func TestCheckCountsAndLostKeys(t *testing.T) {
	h := &hist{}
	h.put("a", "a1", 0, ResultOK)
	h.put("b", "b1", 0, ResultOK)
	h.put("b", "b2", 0, ResultOK)
	h.put("c", "c1", 0, ResultUnknown)
	h.del("c", 0, ResultFail)
	h.get("a", "a1")
	h.final(2, "a")
	h.final(2, "b")
	h.final(2, "c")
	r := Check(Input{Ops: h.ops})
	if r.Ops != 6 || r.Acked != 3 || r.Unknown != 1 || r.Failed != 1 {
		t.Errorf("ops/acked/unknown/failed = %d/%d/%d/%d, want 6/3/1/1", r.Ops, r.Acked, r.Unknown, r.Failed)
	}
	if got := r.LostKeys(); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("LostKeys = %v, want [a b]", got)
	}
	if !strings.Contains(r.Summary(), "lost=3 phantom=0") {
		t.Errorf("summary %q does not report 3 lost writes", r.Summary())
	}
	if !strings.Contains(r.Details(1), "... 2 more") {
		t.Errorf("Details(1) does not truncate:\n%s", r.Details(1))
	}
}

func TestCheckStaleReads(t *testing.T) {
	h := &hist{}
	h.put("a", "a1", 0, ResultOK)
	h.get("a")       // misses a1, acknowledged before: stale
	h.get("a", "a1") // fresh
	r := h.get("a", "a1")
	h.del("a", r, ResultOK)
	h.get("a", "a1") // sees a value an acknowledged delete superseded: stale
	h.get("a")       // fresh
	hinted := h.put("b", "b1", 0, ResultOK)
	h.ops[len(h.ops)-1].Hinted = 1
	h.get("b") // misses b1, acknowledged through a hint: stale, not strict
	h.put("c", "c1", 0, ResultOK)
	h.get("c") // misses c1, answered by a fallback: stale, not strict
	h.ops[len(h.ops)-1].Hinted = 1
	rep := Check(Input{Ops: h.ops})
	if rep.StaleReads != 4 {
		t.Errorf("StaleReads = %d, want 4", rep.StaleReads)
	}
	if rep.StaleStrict != 2 {
		t.Errorf("StaleStrict = %d, want 2 (hinted put %d and the read a fallback answered are explained by sloppy quorums)", rep.StaleStrict, hinted)
	}
}

func TestCheckAvailability(t *testing.T) {
	h := &hist{}
	h.put("a", "a1", 0, ResultOK)      // 1s..1.5s, no fault
	h.put("a", "a2", 0, ResultFail)    // 2s..2.5s, one node down
	h.put("a", "a3", 0, ResultOK)      // 3s..3.5s, one node down
	h.put("a", "a4", 0, ResultUnknown) // 4s..4.5s, two nodes cut off: not counted
	h.put("a", "a5", 0, ResultOK)      // 5s..5.5s
	windows := []FaultWindow{
		{Kind: "kill", Nodes: []int{0}, Affected: 1, Start: 1800 * time.Millisecond, End: 3600 * time.Millisecond},
		{Kind: "partition-majority", Nodes: []int{3, 4}, Affected: 2, Start: 3900 * time.Millisecond, End: 4700 * time.Millisecond},
	}
	r := Check(Input{Ops: h.ops, Windows: windows})
	if r.AvailOps != 4 {
		t.Fatalf("AvailOps = %d, want 4", r.AvailOps)
	}
	if r.Availability != 0.75 {
		t.Errorf("Availability = %v, want 0.75", r.Availability)
	}
	if r.Faults != 2 || r.FaultsByKind["kill"] != 1 {
		t.Errorf("faults = %d %v", r.Faults, r.FaultsByKind)
	}
}

func TestCheckDuplicateValueIsInvalid(t *testing.T) {
	h := &hist{}
	h.put("a", "x", 0, ResultOK)
	h.put("b", "x", 0, ResultOK)
	r := Check(Input{Ops: h.ops})
	if len(r.Invalid) != 1 || r.OK() {
		t.Errorf("Invalid = %v, OK = %v; want one entry and not OK", r.Invalid, r.OK())
	}
}

func TestClassify(t *testing.T) {
	refused := fmt.Errorf("%w at http://127.0.0.1:1: dial tcp 127.0.0.1:1: connect: connection refused", client.ErrUnreachable)
	reset := fmt.Errorf("%w at http://127.0.0.1:1: read: connection reset by peer", client.ErrUnreachable)
	api := func(status int) error { return &client.APIError{Status: status, Message: "x"} }
	notFound := fmt.Errorf("%w: %w", client.ErrNotFound, api(http.StatusNotFound))
	tests := []struct {
		kind Kind
		err  error
		want Result
	}{
		{KindPut, nil, ResultOK},
		{KindGet, nil, ResultOK},
		{KindGet, notFound, ResultOK},
		{KindGet, api(http.StatusServiceUnavailable), ResultFail},
		{KindGet, reset, ResultFail},
		{KindPut, refused, ResultFail},
		{KindPut, reset, ResultUnknown},
		{KindPut, api(http.StatusServiceUnavailable), ResultUnknown},
		{KindPut, api(http.StatusGatewayTimeout), ResultUnknown},
		{KindPut, api(http.StatusInternalServerError), ResultUnknown},
		{KindPut, api(http.StatusBadRequest), ResultFail},
		{KindPut, api(http.StatusRequestEntityTooLarge), ResultFail},
		{KindPut, api(499), ResultUnknown},
		{KindDelete, notFound, ResultUnknown},
		{KindDelete, errors.New("client: PUT /v1/kv/a: context deadline exceeded"), ResultUnknown},
	}
	for _, tt := range tests {
		if got := Classify(tt.kind, tt.err); got != tt.want {
			t.Errorf("Classify(%s, %v) = %s, want %s", tt.kind, tt.err, got, tt.want)
		}
	}
}

func TestHistoryRoundTrip(t *testing.T) {
	h := NewHistory()
	op := h.Begin(Op{Client: 2, Node: 1, Kind: KindPut, Key: "k", Value: "v"})
	h.End(op, ResultUnknown, errors.New("timeout\nafter 10s"))
	g := h.Begin(Op{Kind: KindGet, Key: "k"})
	g.Values = []string{"v"}
	h.End(g, ResultOK, nil)
	var buf bytes.Buffer
	if err := WriteJSONL(&buf, h.Ops()); err != nil {
		t.Fatal(err)
	}
	back, err := ReadHistory(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if len(back) != 2 || back[0].Value != "v" || back[0].Err != "timeout after 10s" || back[1].Values[0] != "v" {
		t.Errorf("round trip = %+v", back)
	}
}

func TestReadHistoryRejects(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"not json", "{", "line 1"},
		{"unknown kind", `{"id":1,"kind":"cas","key":"k","result":"ok"}`, "unknown kind"},
		{"unknown result", `{"id":1,"kind":"get","key":"k","result":"maybe"}`, "unknown result"},
		{"completes early", `{"id":1,"kind":"get","key":"k","result":"ok","invoke":5,"complete":4}`, "completes before"},
		{"put without value", `{"id":1,"kind":"put","key":"k","result":"ok"}`, "no value"},
		{"context from later op", `{"id":1,"kind":"put","key":"k","value":"v","ctx_from":2,"result":"ok"}`, "not earlier"},
		{"duplicate id", `{"id":1,"kind":"get","key":"k","result":"ok"}` + "\n" + `{"id":1,"kind":"get","key":"k","result":"ok"}`, "duplicate"},
		{"long line", `{"id":1,"kind":"get","key":"` + strings.Repeat("k", MaxLineBytes) + `","result":"ok"}`, "too long"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ReadHistory(strings.NewReader(tt.in))
			if !errors.Is(err, ErrBadHistory) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want ErrBadHistory mentioning %q", err, tt.want)
			}
		})
	}
}

// FuzzReadHistory: the decoder never panics, and whatever it accepts the
// checker can judge and WriteJSONL can write back to the same ops.
func FuzzReadHistory(f *testing.F) {
	seeds := []string{
		`{"id":1,"kind":"put","key":"k","value":"v","invoke":1,"complete":2,"result":"ok"}`,
		`{"id":1,"kind":"put","key":"k","value":"v","result":"ok"}` + "\n" +
			`{"id":2,"kind":"get","key":"k","values":["v"],"result":"ok"}` + "\n" +
			`{"id":3,"kind":"delete","key":"k","ctx_from":2,"result":"unknown"}` + "\n" +
			`{"id":4,"kind":"get","key":"k","final":true,"node":1,"result":"ok"}`,
		`{"id":7,"kind":"get","key":"k","result":"fail","err":"x"}` + "\n\n",
		"",
		"{",
		`{"id":-1}`,
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		ops, err := ReadHistory(bytes.NewReader(data))
		if err != nil {
			return
		}
		Check(Input{Ops: ops, Nodes: 3})
		var buf bytes.Buffer
		if err := WriteJSONL(&buf, ops); err != nil {
			t.Fatalf("WriteJSONL: %v", err)
		}
		back, err := ReadHistory(&buf)
		if err != nil {
			t.Fatalf("re-reading a written history: %v", err)
		}
		if len(back) != len(ops) {
			t.Fatalf("re-read %d ops, wrote %d", len(back), len(ops))
		}
	})
}

func TestCompareRoots(t *testing.T) {
	tests := []struct {
		name     string
		roots    []map[string]string
		want     string // substring of the detail; "" means agreement
		wantArcs int
	}{
		{"all agree", []map[string]string{{"a": "1", "b": "2"}, {"a": "1"}, {"b": "2"}}, "", 2},
		{"root differs", []map[string]string{{"a": "1", "b": "2"}, {"a": "9"}, {"b": "2"}}, "arc a: 1 on nodes [1], 9 on nodes [2]", 2},
		{"arc reported by one node only", []map[string]string{{"a": "1", "b": "2"}, {"a": "1"}, {}}, "arc b: reported by 1 nodes, want 2", 2},
		{"no arcs at all", []map[string]string{{}, {}}, "no node reports any arc", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, arcs := CompareRoots(tt.roots, 2)
			if arcs != tt.wantArcs {
				t.Errorf("arcs = %d, want %d", arcs, tt.wantArcs)
			}
			if (tt.want == "") != (got == "") || !strings.Contains(got, tt.want) {
				t.Errorf("CompareRoots = %q, want %q", got, tt.want)
			}
		})
	}
}
