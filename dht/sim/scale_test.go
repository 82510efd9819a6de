package sim

import (
	"context"
	"encoding/json"
	"flag"
	"testing"
)

// The figures of the package documentation come from this test, run by
// hand, e.g.
//
//	go test ./dht/sim -run TestScale -v -timeout 2h \
//	    -scale.nodes 1000000 -scale.lookups 10000 -scale.warm -scale.churn 0.1 -scale.periods 2
//
// It is skipped unless -scale.nodes is given.
var (
	scaleNodes   = flag.Int("scale.nodes", 0, "run TestScale with this many nodes")
	scaleLookups = flag.Int("scale.lookups", 10_000, "lookups per phase")
	scaleWarm    = flag.Bool("scale.warm", false, "measure warm caches too")
	scaleCache   = flag.Int("scale.cache", 1024, "cache size")
	scaleCCache  = flag.Int("scale.churncache", 1024, "cache size in the churn phase")
	scaleChurn   = flag.Float64("scale.churn", 0, "churn per period")
	scalePeriods = flag.Int("scale.periods", 0, "churn periods")
	scaleVNodes  = flag.Int("scale.vnodes", 1, "vnodes")
	scaleRec     = flag.Bool("scale.recursive", false, "recursive lookups")
)

func TestScale(t *testing.T) {
	if *scaleNodes == 0 {
		t.Skip("set -scale.nodes to run")
	}
	cfg := DefaultConfig()
	cfg.Nodes, cfg.Lookups, cfg.Warm, cfg.CacheSize = *scaleNodes, *scaleLookups, *scaleWarm, *scaleCache
	cfg.Churn, cfg.Periods, cfg.VNodes, cfg.Recursive = *scaleChurn, *scalePeriods, *scaleVNodes, *scaleRec
	cfg.ChurnCacheSize = *scaleCCache
	rep, err := Run(context.Background(), cfg, func(s string) { t.Log(s) })
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.MarshalIndent(rep, "", "  ")
	t.Logf("report:\n%s", b)
}
