package store

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/ringkv/ringkv/dht"
)

// request builds a commit request of n records of valueLen bytes each, all
// kept inline (below the value threshold) so they count in full against
// Badger's transaction limit.
func request(t *testing.T, name string, n, valueLen int) *commitReq {
	t.Helper()
	r := &commitReq{done: make(chan error, 1)}
	for i := range n {
		m, err := setMutation(fmt.Appendf(nil, "%s-%04d", name, i),
			dht.Record{Versions: []dht.Version{{Value: make([]byte, valueLen)}}})
		if err != nil {
			t.Fatal(err)
		}
		r.muts = append(r.muts, m)
		r.bytes += valueLen
	}
	return r
}

func TestCommitGroupSplitsAtBadgerLimit(t *testing.T) {
	cfg := DefaultConfig(t.TempDir())
	cfg.SyncWrites = false
	cfg.Logger = nil
	s, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	valueLen := int(cfg.ValueThreshold) / 2
	perTxn := int(s.MaxBatchBytes()) / (valueLen + 64) // records that fit in one transaction
	tests := []struct {
		name    string
		records []int // records per request, in queue order
		fail    []bool
		commits int64
	}{
		{"all fit", []int{1, 2, 3}, []bool{false, false, false}, 1},
		{"split in two", []int{perTxn * 3 / 5, perTxn * 3 / 5}, []bool{false, false}, 2},
		{"split in three", []int{perTxn * 2 / 3, perTxn * 2 / 3, perTxn * 2 / 3}, []bool{false, false, false}, 3},
		{"two per transaction", []int{perTxn / 2, perTxn / 2, perTxn / 2, 1}, []bool{false, false, false, false}, 2},
		{"one too large among fitting", []int{3, perTxn * 2, 3}, []bool{false, true, false}, 2},
		{"too large first", []int{perTxn * 2, 5}, []bool{true, false}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var group []*commitReq
			for i, n := range tt.records {
				group = append(group, request(t, fmt.Sprintf("%s/%d", tt.name, i), n, valueLen))
			}
			before, _, _ := s.CommitStats()
			s.commit.commitGroup(group)
			if after, _, _ := s.CommitStats(); after-before != tt.commits {
				t.Errorf("%d Badger commits, want %d", after-before, tt.commits)
			}
			for i, r := range group {
				err := <-r.done
				if tt.fail[i] != (err != nil) || (err != nil && !errors.Is(err, ErrBatchTooLarge)) {
					t.Fatalf("request %d (%d records): err = %v, want failure=%v", i, tt.records[i], err, tt.fail[i])
				}
				want := int64(tt.records[i])
				if tt.fail[i] {
					want = 0 // atomic: nothing of it was written
				}
				got, err := s.Count(context.Background(), fmt.Appendf(nil, "%s/%d-", tt.name, i))
				if err != nil || got != want {
					t.Fatalf("request %d: Count = %d, %v; want %d", i, got, err, want)
				}
			}
		})
	}
}
