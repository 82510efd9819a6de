package clustertest

import (
	"cmp"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
)

// FaultWindow is a span of the run during which a fault was in force:
// from the moment the nemesis started injecting it until the affected
// nodes were healed and answered ready again.
type FaultWindow struct {
	Kind  string `json:"kind"`
	Nodes []int  `json:"nodes"` // 0-based node indexes the fault hit
	// Affected is how many nodes were down or cut off from the majority
	// during the window (1 for a single-node fault, the minority's size
	// for a majority/minority partition).
	Affected int           `json:"affected"`
	Start    time.Duration `json:"start"`
	End      time.Duration `json:"end"`
	Detail   string        `json:"detail,omitempty"`
}

// Input is what the checker judges: the history, the fault windows, and
// the number of nodes every key is finally read through.
type Input struct {
	Ops     []Op
	Windows []FaultWindow
	// Nodes is the cluster size; every key written must have a successful
	// final read through each of nodes 0..Nodes-1. 0 derives it from the
	// final reads present.
	Nodes int
}

// LostWrite is an acknowledged put whose value is missing from the final
// state of its key on some nodes although no effective write superseded it.
type LostWrite struct {
	Write     Op
	MissingOn []int
}

// Phantom is a value a read returned that no put could have written.
type Phantom struct {
	Read   Op
	Value  string
	Reason string
}

// Resurrection is a value present in the final state although an
// acknowledged put or delete superseded it (its context covered it).
type Resurrection struct {
	Value string
	By    Op // the acknowledged write whose context covered Value
	Nodes []int
}

// Unverified is a key that could not be read through a node at the end.
type Unverified struct {
	Key  string
	Node int
}

// Report is the checker's verdict plus the convergence figures the suite
// fills in after healing.
type Report struct {
	Ops, Acked, Unknown, Failed int
	Faults                      int
	FaultsByKind                map[string]int

	Lost        []LostWrite
	Phantoms    []Phantom
	Resurrected []Resurrection
	Unverified  []Unverified
	// Invalid lists histories the checker cannot judge (two puts of one
	// value: a workload bug).
	Invalid []string

	// ExcusedByUnknownDelete counts acknowledged puts missing at the end
	// whose only superseding write is a delete with an unknown outcome.
	ExcusedByUnknownDelete int
	// StaleReads counts reads during the run that missed a write
	// acknowledged before they started, or returned a value an
	// acknowledged write had superseded before they started. Sloppy
	// quorums allow both; they are reported, not failures.
	StaleReads int
	// StaleStrict counts the stale reads a sloppy quorum does not explain:
	// the write they missed was acknowledged by natural replicas only and
	// the read was answered by natural replicas only, so with W + R > N
	// the two must have met.
	StaleStrict int

	// AvailOps are the ops invoked while at most one node was down or cut
	// off; Availability is the fraction of them that succeeded.
	AvailOps     int
	Availability float64

	// Filled in by the suite.
	Mode       string
	Converged  bool
	ConvergedS float64
	// RootsS is when the Merkle roots last started to agree (-1: never),
	// whether or not the hint queues drained.
	RootsS      float64
	Hints       int64
	Problems    []string // suite-level failures (convergence, hints, setup)
	FinalReadsS float64
}

// OK reports whether the run passed: nothing lost, no phantoms, no
// resurrections, every key verified on every node, and the suite found no
// problem.
func (r *Report) OK() bool {
	return len(r.Lost) == 0 && len(r.Phantoms) == 0 && len(r.Resurrected) == 0 &&
		len(r.Unverified) == 0 && len(r.Invalid) == 0 && len(r.Problems) == 0
}

// Summary is the one-line verdict.
func (r *Report) Summary() string {
	conv := "never"
	if r.Converged {
		conv = fmt.Sprintf("%.1f", r.ConvergedS)
	}
	roots := "never"
	if r.RootsS >= 0 {
		roots = fmt.Sprintf("%.1f", r.RootsS)
	}
	return fmt.Sprintf("ops=%d acked=%d faults=%d lost=%d phantom=%d converged_s=%s availability=%.4f avail_ops=%d unknown=%d failed=%d resurrected=%d unverified=%d stale_reads=%d stale_strict=%d roots_s=%s hints=%d",
		r.Ops, r.Acked, r.Faults, len(r.Lost), len(r.Phantoms), conv, r.Availability, r.AvailOps,
		r.Unknown, r.Failed, len(r.Resurrected), len(r.Unverified), r.StaleReads, r.StaleStrict, roots, r.Hints)
}

// Check judges a history. The rules, for values written by puts (every
// put writes a value of its own):
//
//   - A write w with a causal context supersedes exactly the values the
//     get it took the context from returned. w is effective if it was
//     acknowledged, or is a put with an unknown outcome whose value some
//     read returned (so it happened). A delete with an unknown outcome may
//     have happened: it excuses a missing value, counted apart.
//   - Lost: an acknowledged put no effective write superseded, whose value
//     is absent from the final read of its key through some node.
//   - Phantom: a read returned a value no put of that key wrote, one a put
//     that certainly failed wrote, or one a put invoked after the read
//     completed wrote.
//   - Resurrected: a final read returned a value an acknowledged write
//     superseded (acknowledged deletes must stay deleted; a put that was
//     not covered by the delete's context revives the key with its own
//     value, which is not a resurrection).
func Check(in Input) Report {
	c := newCheck(in)
	c.count()
	c.lost()
	c.phantoms()
	c.resurrections()
	c.stale()
	c.availability()
	return c.r
}

type check struct {
	in        Input
	r         Report
	byID      map[int64]*Op
	putOf     map[string]*Op   // value -> its put
	covers    map[string][]*Op // value -> writes whose context covered it
	observed  map[string]bool  // values some successful read returned
	finals    map[string]map[int][]string
	keys      []string
	finalSeen bool
}

func newCheck(in Input) *check {
	c := &check{in: in, byID: map[int64]*Op{}, putOf: map[string]*Op{}, covers: map[string][]*Op{},
		observed: map[string]bool{}, finals: map[string]map[int][]string{}}
	keys := map[string]bool{}
	for i := range in.Ops {
		op := &in.Ops[i]
		c.byID[op.ID] = op
		if op.Kind != KindGet {
			keys[op.Key] = true
		}
		if op.Kind == KindPut {
			if prev, dup := c.putOf[op.Value]; dup {
				c.r.Invalid = append(c.r.Invalid, fmt.Sprintf("value %q written twice (#%d and #%d)", op.Value, prev.ID, op.ID))
			}
			c.putOf[op.Value] = op
		}
		if op.Kind == KindGet && op.Result == ResultOK {
			for _, v := range op.Values {
				c.observed[v] = true
			}
		}
	}
	for i := range in.Ops {
		op := &in.Ops[i]
		if op.Kind == KindGet || op.CtxFrom == 0 || op.Result == ResultFail {
			continue
		}
		if rd, ok := c.byID[op.CtxFrom]; ok && rd.Kind == KindGet && rd.Result == ResultOK {
			for _, v := range rd.Values {
				c.covers[v] = append(c.covers[v], op)
			}
		}
	}
	c.collectFinals()
	for k := range keys {
		c.keys = append(c.keys, k)
	}
	sort.Strings(c.keys)
	if c.in.Nodes == 0 {
		for _, byNode := range c.finals {
			for n := range byNode {
				c.in.Nodes = max(c.in.Nodes, n+1)
			}
		}
	}
	return c
}

// collectFinals keeps, per key and node, the last successful final read.
func (c *check) collectFinals() {
	last := map[string]map[int]int64{}
	for i := range c.in.Ops {
		op := &c.in.Ops[i]
		if !op.Final || op.Kind != KindGet {
			continue
		}
		c.finalSeen = true
		if op.Result != ResultOK {
			continue
		}
		if c.finals[op.Key] == nil {
			c.finals[op.Key], last[op.Key] = map[int][]string{}, map[int]int64{}
		}
		if op.ID > last[op.Key][op.Node] {
			c.finals[op.Key][op.Node], last[op.Key][op.Node] = op.Values, op.ID
		}
	}
}

func (c *check) count() {
	for i := range c.in.Ops {
		op := &c.in.Ops[i]
		if op.Final {
			continue
		}
		c.r.Ops++
		switch {
		case op.Acked():
			c.r.Acked++
		case op.Result == ResultUnknown:
			c.r.Unknown++
		case op.Result == ResultFail:
			c.r.Failed++
		}
	}
	c.r.Faults = len(c.in.Windows)
	c.r.FaultsByKind = map[string]int{}
	for _, w := range c.in.Windows {
		c.r.FaultsByKind[w.Kind]++
	}
	if c.finalSeen {
		for _, k := range c.keys {
			for n := 0; n < c.in.Nodes; n++ {
				if _, ok := c.finals[k][n]; !ok {
					c.r.Unverified = append(c.r.Unverified, Unverified{Key: k, Node: n})
				}
			}
		}
	}
}

// superseded reports whether an effective write covered value v, and
// whether only a delete of unknown outcome did.
func (c *check) superseded(v string) (yes, byUnknownDelete bool) {
	for _, w := range c.covers[v] {
		switch {
		case w.Result == ResultOK:
			return true, false
		case w.Kind == KindPut && w.Result == ResultUnknown && c.observed[w.Value]:
			return true, false
		case w.Kind == KindDelete && w.Result == ResultUnknown:
			byUnknownDelete = true
		}
	}
	return false, byUnknownDelete
}

func (c *check) lost() {
	if !c.finalSeen {
		return
	}
	for i := range c.in.Ops {
		p := &c.in.Ops[i]
		if p.Kind != KindPut || p.Result != ResultOK {
			continue
		}
		yes, byDelete := c.superseded(p.Value)
		if yes {
			continue
		}
		var missing []int
		for n := 0; n < c.in.Nodes; n++ {
			vals, ok := c.finals[p.Key][n]
			if ok && !slices.Contains(vals, p.Value) {
				missing = append(missing, n)
			}
		}
		switch {
		case len(missing) == 0:
		case byDelete:
			c.r.ExcusedByUnknownDelete++
		default:
			c.r.Lost = append(c.r.Lost, LostWrite{Write: *p, MissingOn: missing})
		}
	}
}

func (c *check) phantoms() {
	for i := range c.in.Ops {
		g := &c.in.Ops[i]
		if g.Kind != KindGet || g.Result != ResultOK {
			continue
		}
		for _, v := range g.Values {
			p, ok := c.putOf[v]
			reason := ""
			switch {
			case !ok:
				reason = "no put wrote this value"
			case p.Key != g.Key:
				reason = fmt.Sprintf("written to key %q by #%d", p.Key, p.ID)
			case p.Result == ResultFail:
				reason = fmt.Sprintf("written by #%d, which certainly failed", p.ID)
			case p.Invoke > g.Complete:
				reason = fmt.Sprintf("written by #%d, invoked after the read completed", p.ID)
			}
			if reason != "" {
				c.r.Phantoms = append(c.r.Phantoms, Phantom{Read: *g, Value: v, Reason: reason})
			}
		}
	}
}

func (c *check) resurrections() {
	found := map[string]*Resurrection{}
	for _, k := range c.keys {
		for n := 0; n < c.in.Nodes; n++ {
			for _, v := range c.finals[k][n] {
				for _, w := range c.covers[v] {
					if w.Result != ResultOK {
						continue
					}
					if found[v] == nil {
						found[v] = &Resurrection{Value: v, By: *w}
					}
					if !slices.Contains(found[v].Nodes, n) {
						found[v].Nodes = append(found[v].Nodes, n)
					}
					break
				}
			}
		}
	}
	for _, r := range found {
		c.r.Resurrected = append(c.r.Resurrected, *r)
	}
	slices.SortFunc(c.r.Resurrected, func(a, b Resurrection) int { return cmp.Compare(a.By.ID, b.By.ID) })
}

// stale counts reads during the run that missed an acknowledged write or
// saw a superseded value. Informational: sloppy quorums permit both.
func (c *check) stale() {
	putsByKey := map[string][]*Op{}
	for i := range c.in.Ops {
		if p := &c.in.Ops[i]; p.Kind == KindPut && p.Result == ResultOK {
			putsByKey[p.Key] = append(putsByKey[p.Key], p)
		}
	}
	for i := range c.in.Ops {
		g := &c.in.Ops[i]
		if g.Kind != KindGet || g.Result != ResultOK || g.Final {
			continue
		}
		if missed := c.staleBecause(g, putsByKey[g.Key]); missed != nil {
			c.r.StaleReads++
			if missed.Hinted == 0 && g.Hinted == 0 {
				c.r.StaleStrict++
			}
		}
	}
}

// staleBecause returns the acknowledged write g should have seen and did
// not: a put completed before g started whose value g misses (and no
// write invoked before g completed superseded), or a write completed
// before g started that superseded a value g returned. Nil if g is fresh.
func (c *check) staleBecause(g *Op, puts []*Op) *Op {
	for _, p := range puts {
		if p.Complete >= g.Invoke || slices.Contains(g.Values, p.Value) {
			continue
		}
		coveredBefore := false
		for _, w := range c.covers[p.Value] {
			if w.Invoke < g.Complete {
				coveredBefore = true
				break
			}
		}
		if !coveredBefore {
			return p
		}
	}
	for _, v := range g.Values {
		for _, w := range c.covers[v] {
			if w.Result == ResultOK && w.Complete < g.Invoke {
				return w
			}
		}
	}
	return nil
}

// availability is the fraction of ops that succeeded among those invoked
// and completed while at most one node was down or cut off.
func (c *check) availability() {
	ok := 0
	for i := range c.in.Ops {
		op := &c.in.Ops[i]
		if op.Final || c.affected(op) > 1 {
			continue
		}
		c.r.AvailOps++
		if op.Result == ResultOK {
			ok++
		}
	}
	if c.r.AvailOps > 0 {
		c.r.Availability = float64(ok) / float64(c.r.AvailOps)
	}
}

// affected adds up the nodes hit by every fault window overlapping op.
func (c *check) affected(op *Op) int {
	n := 0
	for _, w := range c.in.Windows {
		if w.Start <= op.Complete && op.Invoke <= w.End {
			n += w.Affected
		}
	}
	return n
}

// Details renders the failures for a test log: the lost keys with their
// writes, the phantoms and the resurrections, at most limit of each.
func (r *Report) Details(limit int) string {
	var b strings.Builder
	list := func(title string, n int, item func(i int) string) {
		if n == 0 {
			return
		}
		fmt.Fprintf(&b, "%s (%d):\n", title, n)
		for i := 0; i < n && i < limit; i++ {
			fmt.Fprintf(&b, "  %s\n", item(i))
		}
		if n > limit {
			fmt.Fprintf(&b, "  ... %d more\n", n-limit)
		}
	}
	list("lost acknowledged writes", len(r.Lost), func(i int) string {
		l := r.Lost[i]
		return fmt.Sprintf("key %q value %q missing on nodes %v; write %s", l.Write.Key, l.Write.Value, oneBased(l.MissingOn), l.Write.String())
	})
	list("phantom values", len(r.Phantoms), func(i int) string {
		p := r.Phantoms[i]
		return fmt.Sprintf("value %q: %s; read %s", p.Value, p.Reason, p.Read.String())
	})
	list("resurrected values", len(r.Resurrected), func(i int) string {
		x := r.Resurrected[i]
		return fmt.Sprintf("value %q on nodes %v although superseded by %s", x.Value, oneBased(x.Nodes), x.By.String())
	})
	list("unverified keys", len(r.Unverified), func(i int) string {
		u := r.Unverified[i]
		return fmt.Sprintf("key %q could not be read through node %d", u.Key, u.Node+1)
	})
	list("invalid history", len(r.Invalid), func(i int) string { return r.Invalid[i] })
	list("problems", len(r.Problems), func(i int) string { return r.Problems[i] })
	return b.String()
}

// CompareRoots compares the Merkle roots the nodes report (GET /v1/roots,
// one map per node, arc -> root): for every arc, all nodes reporting it
// must agree, and exactly reporters nodes (the replica count) must report
// it, so that agreement is not vacuous. It returns what differs, at most
// three arcs of it ("" when everything agrees), and the number of arcs.
func CompareRoots(roots []map[string]string, reporters int) (string, int) {
	byArc := map[string]map[string][]int{} // arc -> root -> nodes
	for i, m := range roots {
		for arc, root := range m {
			if byArc[arc] == nil {
				byArc[arc] = map[string][]int{}
			}
			byArc[arc][root] = append(byArc[arc][root], i+1)
		}
	}
	if len(byArc) == 0 {
		return "no node reports any arc", 0
	}
	var bad []string
	for arc, rs := range byArc {
		n := 0
		for _, nodes := range rs {
			n += len(nodes)
		}
		if n != reporters {
			bad = append(bad, fmt.Sprintf("arc %s: reported by %d nodes, want %d", arc, n, reporters))
			continue
		}
		if len(rs) > 1 {
			var parts []string
			for root, nodes := range rs {
				parts = append(parts, fmt.Sprintf("%s on nodes %v", root, nodes))
			}
			sort.Strings(parts)
			bad = append(bad, fmt.Sprintf("arc %s: %s", arc, strings.Join(parts, ", ")))
		}
	}
	if len(bad) == 0 {
		return "", len(byArc)
	}
	sort.Strings(bad)
	n := len(bad)
	if n > 3 {
		bad = bad[:3]
	}
	return fmt.Sprintf("%d of %d arcs differ, e.g. %s", n, len(byArc), strings.Join(bad, "; ")), len(byArc)
}

// LostKeys lists the keys with lost writes, sorted, without duplicates.
func (r *Report) LostKeys() []string {
	var keys []string
	for _, l := range r.Lost {
		keys = append(keys, l.Write.Key)
	}
	slices.Sort(keys)
	return slices.Compact(keys)
}

func oneBased(nodes []int) []int {
	out := make([]int, len(nodes))
	for i, n := range nodes {
		out[i] = n + 1
	}
	return out
}
