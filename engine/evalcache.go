package engine

import (
	"sync"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// The two caches topdown keeps during one evaluation, in forms that cost
// less than its defaults. OPA allocates both afresh for every evaluation,
// and its rule cache allocates a trie node and a hash map per reference it
// stores: about a third of the allocations of an evaluation of the shipped
// policy went there.

// dataCache is topdown's cache of base documents for one revision: the
// revision's whole data document, read-only, shared by every evaluation of
// it. The default cache starts empty on every evaluation and fills itself
// from the store (a path, a store read and two trie nodes per document
// read); this one answers every read of loaded data with a lookup. A
// revision's data never changes, so there is nothing to invalidate.
type dataCache struct{ root ast.Value }

// Get returns the data at ref, or nil to let topdown read the store, as for
// a path the data does not hold (topdown then finds nothing there either)
// or for data as a whole (which topdown filters on its own).
func (c dataCache) Get(ref ast.Ref) ast.Value {
	if len(ref) < 2 || !ref[0].Equal(ast.DefaultRootDocument) {
		return nil
	}
	v, err := c.root.Find(ref[1:])
	if err != nil {
		return nil
	}
	return v
}

// Put does nothing: every document the store holds is already here.
func (dataCache) Put(ast.Ref, ast.Value) {}

// ruleCache is topdown's cache of evaluated rules (a topdown.VirtualCache)
// for one evaluation at a time, reused from a pool: a flat list of entries
// with a hash index instead of a trie of hash maps, so that once warm it
// allocates nothing. It keeps the default's semantics: a stack of frames
// (pushed by `with`), each seeing only its own entries.
type ruleCache struct {
	entries []ruleEntry
	// frames are the index of the first entry of each frame; the last is
	// the active one.
	frames []int
	// index maps a reference's hash to its latest entry; entries of the
	// same hash chain through prev.
	index map[int]int
	// keys holds copies of the references stored: topdown may reuse the
	// slice it passes to Put.
	keys []*ast.Term
}

type ruleEntry struct {
	ref       ast.Ref
	value     *ast.Term
	undefined bool
	hash      int
	prev      int // previous entry with the same hash, -1 for none
}

var _ topdown.VirtualCache = (*ruleCache)(nil)

var ruleCaches = sync.Pool{New: func() any {
	return &ruleCache{index: make(map[int]int), frames: make([]int, 1, 4)}
}}

// getRuleCache returns an empty cache with one frame.
func getRuleCache() *ruleCache { return ruleCaches.Get().(*ruleCache) }

// release empties the cache, dropping every reference to the evaluation's
// values, and returns it to the pool.
func (c *ruleCache) release() {
	clear(c.entries)
	c.entries = c.entries[:0]
	clear(c.keys)
	c.keys = c.keys[:0]
	clear(c.index)
	c.frames = c.frames[:1]
	c.frames[0] = 0
	ruleCaches.Put(c)
}

// Push starts a new, empty frame.
func (c *ruleCache) Push() { c.frames = append(c.frames, len(c.entries)) }

// Pop drops the active frame and its entries.
func (c *ruleCache) Pop() {
	start := c.frames[len(c.frames)-1]
	for i := len(c.entries) - 1; i >= start; i-- {
		e := &c.entries[i]
		if e.prev >= 0 {
			c.index[e.hash] = e.prev
		} else {
			delete(c.index, e.hash)
		}
		*e = ruleEntry{}
	}
	c.entries = c.entries[:start]
	c.frames = c.frames[:len(c.frames)-1]
}

// find returns the active frame's entry for ref, or -1.
func (c *ruleCache) find(ref ast.Ref, hash int) int {
	start := c.frames[len(c.frames)-1]
	i, ok := c.index[hash]
	for ok && i >= start {
		if c.entries[i].ref.Equal(ref) {
			return i
		}
		i, ok = c.entries[i].prev, c.entries[i].prev >= 0
	}
	return -1
}

// Get returns the value cached for ref; undefined reports a cached
// undefined result. (nil, false) means not cached.
func (c *ruleCache) Get(ref ast.Ref) (*ast.Term, bool) {
	i := c.find(ref, ref.Hash())
	if i < 0 {
		return nil, false
	}
	if c.entries[i].undefined {
		return nil, true
	}
	return c.entries[i].value, false
}

// Put caches value for ref; a nil value records an undefined result.
func (c *ruleCache) Put(ref ast.Ref, value *ast.Term) {
	hash := ref.Hash()
	if i := c.find(ref, hash); i >= 0 {
		if value != nil {
			c.entries[i].value = value
		} else {
			c.entries[i].undefined = true
		}
		return
	}
	start := len(c.keys)
	c.keys = append(c.keys, ref...)
	prev, ok := c.index[hash]
	if !ok {
		prev = -1
	}
	c.entries = append(c.entries, ruleEntry{
		ref:       c.keys[start:len(c.keys):len(c.keys)],
		value:     value,
		undefined: value == nil,
		hash:      hash,
		prev:      prev,
	})
	c.index[hash] = len(c.entries) - 1
}

// Keys returns the references cached in the active frame.
func (c *ruleCache) Keys() []ast.Ref {
	var keys []ast.Ref
	for _, e := range c.entries[c.frames[len(c.frames)-1]:] {
		if e.value != nil {
			keys = append(keys, e.ref)
		}
	}
	return keys
}
