package engine

import (
	"fmt"
	"hash/maphash"
	"sync"
)

// The decision cache answers a repeated decision without evaluating the
// policy again. It is correct by construction, not by tuning:
//
//   - It belongs to one compiled revision (policy and data): a reload starts
//     with an empty one, so the revision is part of every key.
//   - Its key is the exact encoding of every part of the input the policy
//     can read, found by static analysis of the compiled modules and the
//     decision query (analysis.go): each reference to input contributes
//     its leading string keys (input.token.claims[claim] reads all of
//     input.token.claims). A request differing in anything the policy
//     could read has another key; what the policy never refers to (the
//     request id, headers it does not read) is left out, which is what
//     makes repeated decisions hit.
//   - What the policy can read is narrowed by input.token.kind, the kind of
//     the verified token, where rule bodies require a kind: a body that
//     requires another kind than the request's fails there, so what only
//     its later expressions and its value read cannot change the answer
//     (analyseKinds). The key then starts with the kind.
//   - The encoding (decisionkey.go) is tagged and length-prefixed, so two
//     different values never encode alike; a path that stops at a value
//     that is not an object keys that value with the depth it stopped at.
//     Keys are compared whole (no hash stands in for them).
//   - It is off when the result could differ for the same input: a policy
//     that calls a non-deterministic or clock-reading built-in (time.now_ns,
//     http.send, rand.intn, io.jwt.decode_verify, print, ...), or that uses
//     input as a whole (passes it to a function, iterates its keys, reads
//     it under a computed key), so no key short of the whole input covers
//     what it reads.
//   - Only successful evaluations are kept; errors are evaluated again. A
//     decision is kept on its second sighting, so requests that never
//     repeat cost no memory.

// Defaults for the decision cache.
const (
	// DefaultDecisionCacheSize bounds the entries kept.
	DefaultDecisionCacheSize = 10000
	// maxCacheBytes bounds the memory the cache keeps, over both
	// generations: keys, and decisions with what callers derive from them
	// (estimated as a multiple of their text).
	maxCacheBytes = 8 << 20
	// resultCostFactor estimates a decision's memory from the length of
	// its text: the AST, the parsed answer a caller memoizes, and its wire
	// form.
	resultCostFactor = 6
)

// decisionCache holds results by key in two generations: when the current
// one is full it becomes the previous one and the oldest is dropped, so
// the cache stays bounded in entries and bytes; a hit in the previous
// generation moves the entry to the current one, so a hit in the current
// generation, the common case, takes only a read lock.
type decisionCache struct {
	mu                sync.RWMutex
	cur, prev         map[string]Result
	curCost, prevCost map[string]int // each entry's estimated memory
	curBytes          int
	maxLen            int // entries per generation

	// seen admits a decision on its second sighting only: a request that
	// never repeats (a message post whose body is new each time) is not
	// kept, so one-off keys cannot crowd out the repeated
	// ones or fill memory. It holds hashes of keys; a collision only
	// admits a decision early, it never answers one.
	seenMu  sync.Mutex
	seen    map[uint64]struct{}
	maxSeen int
	seed    maphash.Seed
}

func newDecisionCache(size int) *decisionCache {
	per := max(size/2, 1)
	return &decisionCache{cur: make(map[string]Result), curCost: make(map[string]int), maxLen: per,
		seen: make(map[uint64]struct{}), maxSeen: 4 * max(size, 1), seed: maphash.MakeSeed()}
}

// admit reports whether the decision for key should be kept: true on the
// second miss of the same key.
func (c *decisionCache) admit(key []byte) bool {
	h := maphash.Bytes(c.seed, key)
	c.seenMu.Lock()
	defer c.seenMu.Unlock()
	if _, ok := c.seen[h]; ok {
		delete(c.seen, h)
		return true
	}
	if len(c.seen) >= c.maxSeen {
		clear(c.seen)
	}
	c.seen[h] = struct{}{}
	return false
}

func (c *decisionCache) get(key []byte) (Result, bool) {
	c.mu.RLock()
	r, ok := c.cur[string(key)]
	if !ok {
		if r, ok = c.prev[string(key)]; ok {
			c.mu.RUnlock()
			c.promote(key, r)
			return r, true
		}
	}
	c.mu.RUnlock()
	return r, ok
}

// promote moves an entry the previous generation still answers into the
// current one, so decisions in use survive the next rotation.
func (c *decisionCache) promote(key []byte, r Result) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.prevCost[string(key)]; ok {
		delete(c.prev, string(key))
		delete(c.prevCost, string(key))
		c.insertLocked(key, r, e)
	}
}

// put keeps r under key; cost is the memory it is estimated to hold.
func (c *decisionCache) put(key []byte, r Result, cost int) {
	cost += len(key)
	if cost > maxCacheBytes/8 {
		return // too large to be worth keeping
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.insertLocked(key, r, cost)
}

func (c *decisionCache) insertLocked(key []byte, r Result, cost int) {
	if len(c.cur) >= c.maxLen || c.curBytes+cost > maxCacheBytes/2 {
		c.prev, c.prevCost = c.cur, c.curCost
		c.cur, c.curCost, c.curBytes = make(map[string]Result, len(c.cur)), make(map[string]int, len(c.cur)), 0
	}
	if _, ok := c.cur[string(key)]; !ok {
		c.curBytes += cost
	}
	c.cur[string(key)] = r
	c.curCost[string(key)] = cost
}

// resultCost estimates the memory a kept decision holds.
func resultCost(r Result) int {
	if r.Value == nil {
		return 64
	}
	return resultCostFactor * len(r.Value.String())
}

// decisionCacheState says whether the serving revision caches decisions,
// and if not, why.
func (p *policy) decisionCacheState() string {
	switch {
	case p.cache != nil && p.reads.byKind != nil:
		return fmt.Sprintf("on: keyed on %d input paths, fewer for some token kinds", len(p.reads.paths))
	case p.cache != nil:
		return fmt.Sprintf("on: keyed on %d input paths", len(p.reads.paths))
	case p.reads.off() != "":
		return "off: " + p.reads.off()
	}
	return "off"
}
