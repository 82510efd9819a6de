package antientropy

import (
	"container/list"
	"sync"
	"time"

	"github.com/ringkv/ringkv/dht"
	"github.com/ringkv/ringkv/dht/merkle"
	"github.com/ringkv/ringkv/dht/pb"
)

// treeKey names a responder's tree: its arc and depth.
type treeKey struct {
	start, end uint64
	depth      uint32
}

func keyOf(a *pb.SyncArc) treeKey { return treeKey{a.Start, a.End, a.Depth} }

// treeCache keeps the trees a responder built for a peer's Roots request
// so that the Level requests of the walk that follows do not scan the
// store again. It is bounded by total leaf buckets and by age; the oldest
// entries go first. Roots always rebuilds, so a walk compares against the
// responder's state at its Roots request, at most TreeCacheTTL old.
type treeCache struct {
	maxBuckets int
	ttl        time.Duration
	clock      dht.Clock

	mu      sync.Mutex
	buckets int                       // total buckets of cached trees; guarded by mu
	order   *list.List                // *cacheEntry, oldest first; guarded by mu
	byKey   map[treeKey]*list.Element // guarded by mu
}

type cacheEntry struct {
	key     treeKey
	tree    *merkle.Tree
	expires time.Time
}

func newTreeCache(maxBuckets int, ttl time.Duration, clk dht.Clock) *treeCache {
	return &treeCache{maxBuckets: maxBuckets, ttl: ttl, clock: clk, order: list.New(), byKey: map[treeKey]*list.Element{}}
}

// put caches t under k, replacing any tree there and evicting the oldest
// trees to stay within the bound. A tree larger than the bound is not kept.
func (c *treeCache) put(k treeKey, t *merkle.Tree) {
	if c.maxBuckets == 0 || c.ttl == 0 || t.Buckets() > c.maxBuckets {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.byKey[k]; ok {
		c.removeLocked(el)
	}
	for c.buckets+t.Buckets() > c.maxBuckets {
		c.removeLocked(c.order.Front())
	}
	c.byKey[k] = c.order.PushBack(&cacheEntry{key: k, tree: t, expires: c.clock.Now().Add(c.ttl)})
	c.buckets += t.Buckets()
}

// get returns the tree cached under k unless it expired.
func (c *treeCache) get(k treeKey) (*merkle.Tree, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.byKey[k]
	if !ok {
		return nil, false
	}
	e := el.Value.(*cacheEntry)
	if !c.clock.Now().Before(e.expires) {
		c.removeLocked(el)
		return nil, false
	}
	return e.tree, true
}

// len returns the number of cached trees.
func (c *treeCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}

func (c *treeCache) removeLocked(el *list.Element) {
	e := c.order.Remove(el).(*cacheEntry)
	delete(c.byKey, e.key)
	c.buckets -= e.tree.Buckets()
}
