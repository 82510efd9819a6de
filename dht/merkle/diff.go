package merkle

import (
	"fmt"
	"slices"
)

// Diff returns the indexes at which two hash lists of one level differ, in
// ascending order. When the lists have different lengths, the indexes that
// only the longer one has count as differing.
func Diff(a, b []uint64) []int {
	var out []int
	for i := range max(len(a), len(b)) {
		if i >= len(a) || i >= len(b) || a[i] != b[i] {
			out = append(out, i)
		}
	}
	return out
}

// RemoteLevel returns the remote tree's hashes of the nodes at depth d with
// the given indexes, in order: typically a call to the peer, which answers
// with Tree.Nodes. A local tree's Nodes method is itself a RemoteLevel.
type RemoteLevel func(depth int, indexes []int) ([]uint64, error)

// DiffTrees compares local with a remote tree over the same arc and depth
// and returns the leaf buckets whose hashes differ, ascending. It walks down
// from the root, asking remoteLevel once per level and only for the
// children of nodes that differ, so it costs at most Depth+1 calls and
// O(differences * Depth) hashes. Where the remote answers 0 (an empty
// subtree) it stops asking and reports the local non-empty leaves below.
//
// The two trees must have the same Range and Depth; agree on them before
// calling. Changes to either tree during the walk may make the result
// incomplete or include buckets that no longer differ; the next
// anti-entropy round corrects that. An error from remoteLevel is
// returned wrapped; a remote answer of the wrong length fails with
// ErrRemoteMismatch.
func DiffTrees(local *Tree, remoteLevel RemoteLevel) ([]int, error) {
	depth := local.Depth()
	var out []int
	cur := []int{0}
	for d := 0; d <= depth && len(cur) > 0; d++ {
		remote, err := remoteLevel(d, cur)
		if err != nil {
			return nil, fmt.Errorf("merkle: remote hashes at depth %d: %w", d, err)
		}
		if len(remote) != len(cur) {
			return nil, fmt.Errorf("%w: %d hashes for %d nodes at depth %d", ErrRemoteMismatch, len(remote), len(cur), d)
		}
		mine := local.nodesAt(d, cur)
		var next []int
		for k, i := range cur {
			switch {
			case mine[k] == remote[k]:
			case d == depth:
				out = append(out, i)
			case remote[k] == 0:
				out = local.appendNonEmptyLeaves(out, d, i)
			default:
				next = append(next, 2*i, 2*i+1)
			}
		}
		cur = next
	}
	slices.Sort(out)
	return out, nil
}
