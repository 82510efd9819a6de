package clustertest

import (
	"bufio"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ringkv/ringkv/daemon/client"
)

// ErrBadHistory: a history file cannot be decoded.
var ErrBadHistory = errors.New("clustertest: bad history")

// Kind is what an operation did.
type Kind string

// Operation kinds.
const (
	KindPut    Kind = "put"
	KindGet    Kind = "get"
	KindDelete Kind = "delete"
)

// Result is how an operation ended, as the client saw it.
type Result string

// Operation results. A write that is Unknown may or may not have taken
// effect; one that Failed certainly did not.
const (
	// ResultOK: the daemon acknowledged the operation (2xx, or 404 on a get).
	ResultOK Result = "ok"
	// ResultFail: the operation certainly had no effect (the connection was
	// refused, or the daemon rejected the request with a 4xx).
	ResultFail Result = "fail"
	// ResultUnknown: the outcome is not known (timeout, reset connection,
	// 5xx such as a failed write quorum, which may have stored the value on
	// some replicas).
	ResultUnknown Result = "unknown"
)

// Op is one operation of the history: its arguments, when it was invoked
// and when it completed (both since the start of the run), and its result.
type Op struct {
	// ID is unique within a history and increases with invocation order.
	ID int64 `json:"id"`
	// Client is the client that ran it; Node the node (0-based) it was sent to.
	Client int    `json:"client"`
	Node   int    `json:"node"`
	Kind   Kind   `json:"kind"`
	Key    string `json:"key"`
	// Value is the value a put wrote. Every put of a history writes a value
	// no other put writes.
	Value string `json:"value,omitempty"`
	// CtxFrom is, for a put or delete sent with a causal context, the ID of
	// the get whose context it carried; 0 means no context (a blind write).
	CtxFrom int64 `json:"ctx_from,omitempty"`
	// Invoke and Complete are offsets from the start of the run.
	Invoke   time.Duration `json:"invoke"`
	Complete time.Duration `json:"complete"`
	Result   Result        `json:"result"`
	// Values are the siblings a successful get returned; empty means the
	// key was not found.
	Values []string `json:"values,omitempty"`
	// Final marks the reads made after healing and convergence.
	Final bool `json:"final,omitempty"`
	// Hinted is, for an acknowledged put or delete, how many of its acks
	// came from fallback nodes holding a hint (a sloppy quorum) instead of
	// the key's natural replicas; for a get, how many of the answers did.
	Hinted int `json:"hinted,omitempty"`
	// Coordinator is the peer ID of the replica that coordinated an
	// acknowledged put or delete, and Context the causal context a write
	// or a successful get returned: with them the versions (dots) behind
	// an anomaly can be traced offline (version.DecodeContext).
	Coordinator string `json:"coord,omitempty"`
	Context     string `json:"cctx,omitempty"`
	Err         string `json:"err,omitempty"`
}

// Acked reports whether the op is an acknowledged write.
func (o *Op) Acked() bool { return o.Kind != KindGet && o.Result == ResultOK }

func (o *Op) String() string {
	s := fmt.Sprintf("#%d c%d n%d %s %s", o.ID, o.Client, o.Node+1, o.Kind, o.Key)
	if o.Value != "" {
		s += " value=" + o.Value
	}
	if o.CtxFrom != 0 {
		s += fmt.Sprintf(" ctx_from=#%d", o.CtxFrom)
	}
	s += fmt.Sprintf(" [%.3fs..%.3fs] %s", o.Invoke.Seconds(), o.Complete.Seconds(), o.Result)
	if o.Kind == KindGet && o.Result == ResultOK {
		s += fmt.Sprintf(" values=%v", o.Values)
	}
	if o.Err != "" {
		s += " err=" + o.Err
	}
	return s
}

// History records operations from many goroutines. Begin stamps an op's
// invocation, End its completion; Ops returns them in invocation order.
type History struct {
	start time.Time

	mu     sync.Mutex
	nextID int64 // guarded by mu
	ops    []Op  // guarded by mu; in completion order
}

// NewHistory starts an empty history; its clock starts now.
func NewHistory() *History { return &History{start: time.Now()} }

// Since is the offset of now from the history's start.
func (h *History) Since() time.Duration { return time.Since(h.start) }

// Start is when the history began.
func (h *History) Start() time.Time { return h.start }

// Begin assigns op an ID and stamps its invocation.
func (h *History) Begin(op Op) Op {
	h.mu.Lock()
	h.nextID++
	op.ID = h.nextID
	h.mu.Unlock()
	op.Invoke = h.Since()
	return op
}

// End stamps op's completion with its result and records it.
func (h *History) End(op Op, res Result, err error) Op {
	op.Complete = h.Since()
	op.Result = res
	if err != nil {
		op.Err = oneLine(err.Error())
	}
	h.mu.Lock()
	h.ops = append(h.ops, op)
	h.mu.Unlock()
	return op
}

// Ops returns a copy of the recorded ops sorted by ID.
func (h *History) Ops() []Op {
	h.mu.Lock()
	out := append([]Op(nil), h.ops...)
	h.mu.Unlock()
	sortByID(out)
	return out
}

// Len is the number of recorded ops.
func (h *History) Len() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.ops)
}

// Classify turns a client error into a result for an op of kind k. A get
// that finds nothing is OK. A write fails only when it certainly had no
// effect: the connection was refused before the request was sent, or the
// daemon rejected it with a 4xx other than 404, 408, 429 or 499. Anything
// else (timeouts, resets, 5xx) leaves a write's outcome unknown. Reads
// have no effect, so every read error is a failure.
func Classify(k Kind, err error) Result {
	if err == nil {
		return ResultOK
	}
	if k == KindGet {
		if errors.Is(err, client.ErrNotFound) {
			return ResultOK
		}
		return ResultFail
	}
	var ae *client.APIError
	if errors.As(err, &ae) {
		switch {
		case ae.Status == http.StatusNotFound, ae.Status == http.StatusRequestTimeout,
			ae.Status == http.StatusTooManyRequests, ae.Status == 499:
			return ResultUnknown
		case ae.Status >= 400 && ae.Status < 500:
			return ResultFail
		}
		return ResultUnknown
	}
	// The client reports every connection-level error as ErrUnreachable
	// with the root cause as text only. "connection refused" can only
	// happen while connecting, so the request was never sent; a reset or
	// EOF may come after the daemon acted on it.
	if errors.Is(err, client.ErrUnreachable) && strings.Contains(err.Error(), "connection refused") {
		return ResultFail
	}
	return ResultUnknown
}

// WriteJSONL writes ops as JSON lines, the format ReadHistory reads.
func WriteJSONL(w io.Writer, ops []Op) error {
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	for i := range ops {
		if err := enc.Encode(&ops[i]); err != nil {
			return fmt.Errorf("clustertest: write history: %w", err)
		}
	}
	return bw.Flush()
}

// MaxLineBytes bounds one line of a history file.
const MaxLineBytes = 1 << 20

// ReadHistory decodes a JSON-lines history written by WriteJSONL, so a
// failed run's history can be checked again offline. It rejects lines
// over MaxLineBytes, unknown kinds and results, duplicate IDs and ops that
// complete before they are invoked.
func ReadHistory(r io.Reader) ([]Op, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), MaxLineBytes)
	var ops []Op
	seen := map[int64]bool{}
	for line := 1; sc.Scan(); line++ {
		b := sc.Bytes()
		if len(strings.TrimSpace(string(b))) == 0 {
			continue
		}
		var op Op
		if err := json.Unmarshal(b, &op); err != nil {
			return nil, fmt.Errorf("%w: line %d: %v", ErrBadHistory, line, err)
		}
		if err := validOp(&op); err != nil {
			return nil, fmt.Errorf("%w: line %d: %v", ErrBadHistory, line, err)
		}
		if seen[op.ID] {
			return nil, fmt.Errorf("%w: line %d: duplicate op id %d", ErrBadHistory, line, op.ID)
		}
		seen[op.ID] = true
		ops = append(ops, op)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadHistory, err)
	}
	sortByID(ops)
	return ops, nil
}

func validOp(op *Op) error {
	switch op.Kind {
	case KindPut, KindGet, KindDelete:
	default:
		return fmt.Errorf("unknown kind %q", op.Kind)
	}
	switch op.Result {
	case ResultOK, ResultFail, ResultUnknown:
	default:
		return fmt.Errorf("unknown result %q", op.Result)
	}
	switch {
	case op.ID <= 0:
		return fmt.Errorf("op id %d is not positive", op.ID)
	case op.Complete < op.Invoke:
		return fmt.Errorf("op %d completes before it is invoked", op.ID)
	case op.Key == "":
		return fmt.Errorf("op %d has no key", op.ID)
	case op.Kind == KindPut && op.Value == "":
		return fmt.Errorf("put %d has no value", op.ID)
	case op.CtxFrom < 0 || op.CtxFrom >= op.ID && op.CtxFrom != 0:
		return fmt.Errorf("op %d takes its context from op %d, which is not earlier", op.ID, op.CtxFrom)
	}
	return nil
}

func sortByID(ops []Op) {
	slices.SortFunc(ops, func(a, b Op) int { return cmp.Compare(a.ID, b.ID) })
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
