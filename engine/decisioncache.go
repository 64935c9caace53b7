package engine

import (
	"encoding/binary"
	"fmt"
	"slices"
	"sync"

	"github.com/open-policy-agent/opa/v1/ast"
)

// The decision cache answers a repeated decision without evaluating the
// policy again. It is correct by construction, not by tuning:
//
//   - It belongs to one compiled revision (policy and data): a reload starts
//     with an empty one, so the revision is part of every key.
//   - Its key is the exact encoding of every part of the input the policy
//     can read, found by static analysis of the compiled modules: each
//     reference to input contributes its leading string keys (input.token
//     .claims[claim] reads all of input.token.claims). A request differing
//     in anything the policy could read has another key; what the policy
//     never refers to (the request id, headers it does not read) is left
//     out, which is what makes repeated decisions hit.
//   - The encoding is tagged and length-prefixed, so two different values
//     never encode alike, and keys are compared whole (no hash stands in
//     for them).
//   - It is off when the result could differ for the same input: a policy
//     that calls a non-deterministic or clock-reading built-in (time.now_ns,
//     http.send, rand.intn, io.jwt.decode_verify, print, ...), or that uses
//     input as a whole (passes it to a function, iterates its keys, reads
//     it under a computed key), so no key short of the whole input covers
//     what it reads.
//   - Only successful evaluations are kept; errors are evaluated again.

// Defaults for the decision cache.
const (
	// DefaultDecisionCacheSize bounds the entries kept.
	DefaultDecisionCacheSize = 10000
	// maxKeyBytes bounds one key: a request whose readable input encodes
	// larger (a big parsed body) is evaluated every time.
	maxKeyBytes = 16 << 10
	// maxCacheBytes bounds the keys kept, over both generations.
	maxCacheBytes = 8 << 20
)

// clockBuiltins read the evaluation's clock though OPA does not mark them
// non-deterministic; print and trace have effects a cached answer would
// skip (print statements are compiled out unless enabled, but a future
// change enabling them must not be silently cached).
var clockBuiltins = map[string]bool{
	"io.jwt.decode_verify":                                   true,
	"crypto.x509.parse_and_verify_certificates":              true,
	"crypto.x509.parse_and_verify_certificates_with_options": true,
	"print":          true,
	"internal.print": true,
	"trace":          true,
}

// inputReads is what a compiled policy can read of its input.
type inputReads struct {
	// paths are the minimal set of key paths under input the policy refers
	// to: none is a prefix of another.
	paths [][]*ast.Term
	// off says why no decision may be cached ("" when they may).
	off string
}

// analyseInput walks every rule of the compiled modules.
func analyseInput(c *ast.Compiler) inputReads {
	var paths [][]*ast.Term
	var off string
	var vis *ast.GenericVisitor
	vis = ast.NewGenericVisitor(func(x any) bool {
		switch x := x.(type) {
		case ast.Ref:
			if name := x.String(); off == "" {
				if b, ok := ast.BuiltinMap[name]; ok && (b.Nondeterministic || clockBuiltins[name]) {
					off = "the policy calls " + name
				}
			}
			if !x[0].Equal(ast.InputRootDocument) {
				return false
			}
			if len(x) == 1 && off == "" {
				off = "the policy uses input as a whole"
			}
			var p []*ast.Term
			for _, t := range x[1:] {
				if _, ok := t.Value.(ast.String); !ok {
					break
				}
				p = append(p, t)
			}
			paths = append(paths, p)
			// The keys that are not strings may themselves read input.
			for _, t := range x[1:] {
				vis.Walk(t)
			}
			return true
		case ast.Var:
			// The compiler turns a bare input into a one-term ref; this
			// catches any other form.
			if x.Equal(ast.InputRootDocument.Value) && off == "" {
				off = "the policy uses input as a whole"
			}
		}
		return false
	})
	for _, name := range slices.Sorted(mapKeys(c.Modules)) {
		for _, r := range c.Modules[name].Rules {
			vis.Walk(r)
		}
	}
	if off != "" {
		return inputReads{off: off}
	}
	slices.SortFunc(paths, func(a, b []*ast.Term) int {
		if len(a) != len(b) {
			return len(a) - len(b)
		}
		return ast.Ref(a).Compare(ast.Ref(b))
	})
	var min [][]*ast.Term
	for _, p := range paths {
		if len(p) == 0 {
			return inputReads{off: "the policy reads input under a computed key"}
		}
		if !slices.ContainsFunc(min, func(q []*ast.Term) bool { return ast.Ref(p).HasPrefix(ast.Ref(q)) }) {
			min = append(min, p)
		}
	}
	return inputReads{paths: min}
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// decisionKey appends to buf the encoding of every part of input the
// policy can read. ok is false when the input cannot be keyed (a value
// outside JSON's types, or too large): it is evaluated, not cached.
func (r *inputReads) decisionKey(buf []byte, input ast.Value) ([]byte, bool) {
	if input == nil {
		return append(buf, 'U'), true
	}
	for _, path := range r.paths {
		buf = append(buf, 'P')
		v := input
		for _, k := range path {
			obj, ok := v.(ast.Object)
			if !ok {
				// A value under a key of a non-object: the whole value is
				// what the policy can see (a set's membership, say).
				break
			}
			t := obj.Get(k)
			if t == nil {
				v = nil
				break
			}
			v = t.Value
		}
		if v == nil {
			buf = append(buf, 'u')
			continue
		}
		var ok bool
		if buf, ok = encodeValue(buf, v); !ok || len(buf) > maxKeyBytes {
			return buf, false
		}
	}
	return buf, true
}

// encodeValue appends a tagged, length-prefixed encoding of v: different
// values never encode alike.
func encodeValue(buf []byte, v ast.Value) ([]byte, bool) {
	ok := true
	switch x := v.(type) {
	case ast.Null:
		buf = append(buf, 'z')
	case ast.Boolean:
		if x {
			buf = append(buf, 't')
		} else {
			buf = append(buf, 'f')
		}
	case ast.Number:
		buf = append(buf, 'n')
		buf = binary.AppendUvarint(buf, uint64(len(x)))
		buf = append(buf, x...)
	case ast.String:
		buf = append(buf, 's')
		buf = binary.AppendUvarint(buf, uint64(len(x)))
		buf = append(buf, x...)
	case *ast.Array:
		buf = append(buf, 'a')
		buf = binary.AppendUvarint(buf, uint64(x.Len()))
		x.Foreach(func(t *ast.Term) {
			if ok {
				buf, ok = encodeValue(buf, t.Value)
			}
		})
	case ast.Object:
		buf = append(buf, 'o')
		buf = binary.AppendUvarint(buf, uint64(x.Len()))
		x.Foreach(func(k, t *ast.Term) {
			if ok {
				buf, ok = encodeValue(buf, k.Value)
			}
			if ok {
				buf, ok = encodeValue(buf, t.Value)
			}
		})
	case ast.Set:
		buf = append(buf, 'e')
		buf = binary.AppendUvarint(buf, uint64(x.Len()))
		x.Foreach(func(t *ast.Term) {
			if ok {
				buf, ok = encodeValue(buf, t.Value)
			}
		})
	default:
		return buf, false
	}
	return buf, ok && len(buf) <= maxKeyBytes
}

// decisionCache holds results by key in two generations: when the current
// one is full it becomes the previous one and the oldest is dropped, so
// the cache stays bounded in entries and bytes without a lock per hit
// write.
type decisionCache struct {
	mu        sync.RWMutex
	cur, prev map[string]Result
	curBytes  int
	maxLen    int // entries per generation
}

func newDecisionCache(size int) *decisionCache {
	per := max(size/2, 1)
	return &decisionCache{cur: make(map[string]Result), maxLen: per}
}

func (c *decisionCache) get(key []byte) (Result, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if r, ok := c.cur[string(key)]; ok {
		return r, true
	}
	r, ok := c.prev[string(key)]
	return r, ok
}

func (c *decisionCache) put(key []byte, r Result) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.cur) >= c.maxLen || c.curBytes+len(key) > maxCacheBytes/2 {
		c.prev, c.cur, c.curBytes = c.cur, make(map[string]Result, len(c.cur)), 0
	}
	if _, ok := c.cur[string(key)]; !ok {
		c.curBytes += len(key)
	}
	c.cur[string(key)] = r
}

// keyBufs recycles key buffers.
var keyBufs = sync.Pool{New: func() any { b := make([]byte, 0, 2048); return &b }}

// DecisionCacheState says whether the serving revision caches decisions,
// and if not, why.
func (p *policy) decisionCacheState() string {
	switch {
	case p.cache != nil:
		return fmt.Sprintf("on: keyed on %d input paths", len(p.reads.paths))
	case p.reads.off != "":
		return "off: " + p.reads.off
	}
	return "off"
}
