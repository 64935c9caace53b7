package engine

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"fmt"
	"hash/maphash"
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
//     can read, found by static analysis of the compiled modules and the
//     decision query: each reference to input contributes its leading
//     string keys (input.token.claims[claim] reads all of
//     input.token.claims). A request differing
//     in anything the policy could read has another key; what the policy
//     never refers to (the request id, headers it does not read) is left
//     out, which is what makes repeated decisions hit.
//   - What the policy can read is narrowed by input.token.kind, the kind of
//     the verified token, where rule bodies require a kind: a body that
//     requires another kind than the request's fails there, so what only
//     its later expressions and its value read cannot change the answer
//     (analyseKinds). The key then starts with the kind.
//   - The encoding is tagged and length-prefixed, so two different values
//     never encode alike; a path that stops at a value that is not an
//     object keys that value with the depth it stopped at. Keys are
//     compared whole (no hash stands in for them).
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
	// maxKeyBytes bounds one key: a request whose readable input encodes
	// larger (a big parsed body) is evaluated every time.
	maxKeyBytes = 16 << 10
	// maxCacheBytes bounds the memory the cache keeps, over both
	// generations: keys, and decisions with what callers derive from them
	// (estimated as a multiple of their text).
	maxCacheBytes = 8 << 20
	// resultCostFactor estimates a decision's memory from the length of
	// its text: the AST, the parsed answer a caller memoizes, and its wire
	// form.
	resultCostFactor = 6
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
	// whole is why the policy may read any part of input ("" when it reads
	// only paths): it uses input as a whole or under a computed key.
	whole string
	// paths are the minimal set of key paths under input the policy refers
	// to: none is a prefix of another. Meaningless when whole is set.
	paths [][]*ast.Term
	// nondet names a built-in the policy calls whose answer could differ
	// for the same input ("" when none).
	nondet string
	// byKind narrows paths for an input whose input.token.kind is a
	// string: the paths to key on for each kind some rule requires, and
	// otherKinds for any other (see analyseKinds). Nil when not narrowed.
	byKind     map[string][][]*ast.Term
	otherKinds [][]*ast.Term
}

// keyPaths returns the paths to key input on: narrowed by the token's kind
// when there is one (narrowed, with the kind), else every path.
func (r *inputReads) keyPaths(top func(*ast.Term) *ast.Term) (paths [][]*ast.Term, kind ast.String, narrowed bool) {
	if r.byKind == nil || top == nil {
		return r.paths, "", false
	}
	tok := top(keyToken)
	if tok == nil {
		return r.paths, "", false
	}
	obj, ok := tok.Value.(ast.Object)
	if !ok {
		return r.paths, "", false
	}
	k := obj.Get(keyKind)
	if k == nil {
		return r.paths, "", false
	}
	if kind, ok = k.Value.(ast.String); !ok {
		return r.paths, "", false
	}
	if paths, ok := r.byKind[string(kind)]; ok {
		return paths, kind, true
	}
	return r.otherKinds, kind, true
}

var (
	keyToken = ast.StringTerm("token")
	keyKind  = ast.StringTerm("kind")
)

// off says why decisions of this policy may not be cached ("" when they
// may).
func (r *inputReads) off() string {
	switch {
	case r.whole != "":
		return r.whole
	case r.nondet != "":
		return "the policy calls " + r.nondet
	}
	return ""
}

// reads reports whether the policy may read input at path or under it.
func (r *inputReads) reads(path []string) bool {
	if r.whole != "" {
		return true
	}
	for _, p := range r.paths {
		n := min(len(p), len(path))
		same := true
		for i := range n {
			if string(p[i].Value.(ast.String)) != path[i] {
				same = false
				break
			}
		}
		if same {
			return true
		}
	}
	return false
}

// analyseInput walks the decision query and every rule of the compiled
// modules: a configured query may itself read input (data.x[input.y]).
func analyseInput(c *ast.Compiler, query ast.Ref) inputReads {
	rc := newReadCollector(nil)
	rc.vis.Walk(query)
	for _, name := range slices.Sorted(mapKeys(c.Modules)) {
		for _, rule := range c.Modules[name].Rules {
			rc.vis.Walk(rule)
		}
	}
	r := inputReads{whole: rc.whole, nondet: rc.nondet}
	if r.whole != "" {
		return r
	}
	r.paths = rc.minimal()
	r.byKind, r.otherKinds = analyseKinds(c, query)
	return r
}

// readCollector gathers the input paths a walk meets.
type readCollector struct {
	whole, nondet string
	paths         [][]*ast.Term
	with          bool // an expression with a with modifier was met
	vis           *ast.GenericVisitor
}

// newReadCollector returns a collector that also calls onData, when not
// nil, with each reference under data it meets.
func newReadCollector(onData func(ast.Ref)) *readCollector {
	rc := &readCollector{}
	rc.vis = ast.NewGenericVisitor(func(x any) bool {
		switch x := x.(type) {
		case *ast.Expr:
			if len(x.With) > 0 {
				rc.with = true
			}
		case ast.Ref:
			if name := x.String(); rc.nondet == "" {
				if b, ok := ast.BuiltinMap[name]; ok && (b.Nondeterministic || clockBuiltins[name]) {
					rc.nondet = name
				}
			}
			if onData != nil && x[0].Equal(ast.DefaultRootDocument) {
				onData(x)
			}
			if !x[0].Equal(ast.InputRootDocument) {
				return false
			}
			var p []*ast.Term
			for _, t := range x[1:] {
				if _, ok := t.Value.(ast.String); !ok {
					break
				}
				p = append(p, t)
			}
			switch {
			case len(x) == 1:
				// The compiler turns a bare input into a one-term ref.
				rc.whole = cmp.Or(rc.whole, "the policy uses input as a whole")
			case len(p) == 0:
				rc.whole = cmp.Or(rc.whole, "the policy reads input under a computed key")
			}
			rc.paths = append(rc.paths, p)
			// The keys that are not strings may themselves read input.
			for _, t := range x[1:] {
				rc.vis.Walk(t)
			}
			return true
		case ast.Var:
			// Any other form of a bare input.
			if x.Equal(ast.InputRootDocument.Value) {
				rc.whole = cmp.Or(rc.whole, "the policy uses input as a whole")
			}
		}
		return false
	})
	return rc
}

// minimal is the collected paths less those under another.
func (rc *readCollector) minimal() [][]*ast.Term {
	paths := slices.Clone(rc.paths)
	slices.SortFunc(paths, func(a, b []*ast.Term) int {
		if len(a) != len(b) {
			return len(a) - len(b)
		}
		return ast.Ref(a).Compare(ast.Ref(b))
	})
	var out [][]*ast.Term
	for _, p := range paths {
		if !slices.ContainsFunc(out, func(q []*ast.Term) bool { return ast.Ref(p).HasPrefix(ast.Ref(q)) }) {
			out = append(out, p)
		}
	}
	return out
}

// tokenKindRef is what guestgate's policies dispatch on: the verified
// token's kind.
var tokenKindRef = ast.MustParseRef("input.token.kind")

// kindGuard returns the kind a rule body's expression requires, when it
// is input.token.kind == "<kind>" (or =), not negated and without with.
func kindGuard(expr *ast.Expr) (string, bool) {
	if expr.Negated || len(expr.With) > 0 || !expr.IsCall() || len(expr.Operands()) != 2 {
		return "", false
	}
	if op := expr.Operator(); !op.Equal(ast.Equal.Ref()) && !op.Equal(ast.Equality.Ref()) {
		return "", false
	}
	a, b := expr.Operand(0), expr.Operand(1)
	if ref, ok := b.Value.(ast.Ref); ok && ref.Equal(tokenKindRef) {
		a, b = b, a
	}
	if ref, ok := a.Value.(ast.Ref); !ok || !ref.Equal(tokenKindRef) {
		return "", false
	}
	kind, ok := b.Value.(ast.String)
	return string(kind), ok
}

// analyseKinds narrows the paths to key on by the token's kind. A rule
// body that requires input.token.kind to be another kind than the
// request's fails at that expression: what comes after it, and the rule's
// value, are never evaluated, so what only they read cannot change the
// answer. For each kind some body requires, and for every other kind, it
// walks what the decision query reaches (rules through the references to
// them, every definition and else of each, and each body up to a guard
// that excludes the kind) and collects what that reads. (An XBS anonymous
// token never reaches the guest package, which reads the parsed body: the
// chat commands of anonymous visitors, whose bodies differ, share their
// decisions.)
//
// It gives up (nil) where it cannot be sure: no guard at all, a with
// modifier anywhere reached (it can change input.token.kind for what it
// evaluates), or input used as a whole.
func analyseKinds(c *ast.Compiler, query ast.Ref) (byKind map[string][][]*ast.Term, other [][]*ast.Term) {
	kinds := map[string]bool{}
	for _, mod := range c.Modules {
		for _, rule := range mod.Rules {
			for r := rule; r != nil; r = r.Else {
				for _, expr := range r.Body {
					if kind, ok := kindGuard(expr); ok {
						kinds[kind] = true
					}
				}
			}
		}
	}
	if len(kinds) == 0 {
		return nil, nil
	}
	// reached is what the query reaches when input.token.kind is kind, or
	// any kind no guard names when known is false.
	reached := func(kind string, known bool) ([][]*ast.Term, bool) {
		seen := map[*ast.Rule]bool{}
		var queue []*ast.Rule
		rc := newReadCollector(func(ref ast.Ref) {
			for _, rule := range c.GetRulesDynamicWithOpts(ref, ast.RulesOptions{IncludeHiddenModules: true}) {
				if !seen[rule] {
					seen[rule] = true
					queue = append(queue, rule)
				}
			}
		})
		rc.vis.Walk(query)
		for len(queue) > 0 {
			rule := queue[len(queue)-1]
			queue = queue[:len(queue)-1]
			for r := rule; r != nil; r = r.Else {
				rc.vis.Walk(r.Head.Args)
				rc.vis.Walk(r.Head.Reference)
				excluded := false
				for _, expr := range r.Body {
					if required, ok := kindGuard(expr); ok && (!known || required != kind) {
						excluded = true
						break
					}
					rc.vis.Walk(expr)
				}
				if !excluded {
					if r.Head.Key != nil {
						rc.vis.Walk(r.Head.Key)
					}
					if r.Head.Value != nil {
						rc.vis.Walk(r.Head.Value)
					}
				}
			}
		}
		if rc.whole != "" || rc.with {
			return nil, false
		}
		return rc.minimal(), true
	}
	byKind = make(map[string][][]*ast.Term, len(kinds))
	for kind := range kinds {
		paths, ok := reached(kind, true)
		if !ok {
			return nil, nil
		}
		byKind[kind] = paths
	}
	other, ok := reached("", false)
	if !ok {
		return nil, nil
	}
	return byKind, other
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

// keyEncoder encodes the parts of an input the policy can read. Its
// callbacks are bound once, so walking objects and arrays allocates
// nothing per value.
type keyEncoder struct {
	buf  []byte
	ok   bool
	elem func(*ast.Term)
	pair func(k, v *ast.Term)
}

func newKeyEncoder() *keyEncoder {
	e := &keyEncoder{buf: make([]byte, 0, 2048)}
	e.elem = func(t *ast.Term) { e.value(t.Value) }
	e.pair = func(k, v *ast.Term) { e.value(k.Value); e.value(v.Value) }
	return e
}

// keyEncoders recycles encoders and their buffers.
var keyEncoders = sync.Pool{New: func() any { return newKeyEncoder() }}

// decisionKey encodes every part of input the policy can read into e.buf.
// It returns false when the input cannot be keyed (a value outside JSON's
// types, or too large): it is evaluated, not cached.
func (e *keyEncoder) decisionKey(r *inputReads, input ast.Value, shared []*Shared) bool {
	e.buf, e.ok = e.buf[:0], true
	if input == nil {
		e.buf = append(e.buf, 'U')
		return true
	}
	var top func(*ast.Term) *ast.Term
	if obj, ok := input.(ast.Object); ok {
		top = obj.Get
	}
	return e.readPaths(r, input, top, shared)
}

// inputKey is decisionKey of in.Value() without building it: the input's
// top-level parts come from in.Get, which gives the very terms Value puts
// in the document, so the key is the same, byte for byte.
func (e *keyEncoder) inputKey(r *inputReads, in Input, shared []*Shared) bool {
	e.buf, e.ok = e.buf[:0], true
	return e.readPaths(r, nil, in.Get, shared)
}

// readPaths appends, for each path the policy reads, the value of input
// there. top, when not nil, looks up input's top-level keys (input is then
// an object, and may be nil when top stands for it).
func (e *keyEncoder) readPaths(r *inputReads, input ast.Value, top func(*ast.Term) *ast.Term, shared []*Shared) bool {
	keyPaths, kind, narrowed := r.keyPaths(top)
	if narrowed {
		// Keyed on the kind's own paths: the kind itself comes first, and
		// no key of every path starts with 'K'.
		e.buf = append(e.buf, 'K')
		e.buf = binary.AppendUvarint(e.buf, uint64(len(kind)))
		e.buf = append(e.buf, kind...)
	}
paths:
	for _, path := range keyPaths {
		e.buf = append(e.buf, 'P')
		v := input
		var term *ast.Term // v's term, nil for input itself
		depth := 0         // the keys of path v is under
		for i, k := range path {
			var t *ast.Term
			if i == 0 && top != nil {
				t = top(k)
			} else {
				obj, ok := v.(ast.Object)
				if !ok {
					// A value under a key of a non-object: the whole value is
					// what the policy can see (a set's membership, say).
					break
				}
				t = obj.Get(k)
			}
			if t == nil {
				v, term = nil, nil
				break
			}
			v, term = t.Value, t
			depth++
		}
		if v == nil {
			e.buf = append(e.buf, 'u')
			continue
		}
		if depth < len(path) {
			// The path stopped at a non-object: say where, or "c1" at
			// input.a would key like "c1" at input.a.b.
			e.buf = append(e.buf, 'd')
			e.buf = binary.AppendUvarint(e.buf, uint64(depth))
		}
		for _, s := range shared {
			if s != nil && s.term == term && s.enc != nil {
				e.buf = append(e.buf, s.enc...)
				continue paths
			}
		}
		if e.value(v); !e.ok {
			return false
		}
	}
	return true
}

// Shared is a part of many requests' input that is built once, such as
// input.token for a verified token the caller keeps: its decision-cache
// encoding is made once too. Pass it to Eval with an input that holds
// Term() itself (the same pointer); terms are never modified once built.
type Shared struct {
	term *ast.Term
	enc  []byte // nil when the value cannot be keyed
}

// NewShared wraps v as a shared input part.
func NewShared(v ast.Value) *Shared {
	e := keyEncoders.Get().(*keyEncoder)
	defer keyEncoders.Put(e)
	e.buf, e.ok = e.buf[:0], true
	e.value(v)
	s := &Shared{term: ast.NewTerm(v)}
	if e.ok {
		// A copy of its own length: a token kept in the token cache keeps
		// this, not the encoder's buffer.
		s.enc = bytes.Clone(e.buf)
	}
	return s
}

// Term is the term to put in the input.
func (s *Shared) Term() *ast.Term { return s.term }

// value appends a tagged, length-prefixed encoding of v: different values
// never encode alike.
func (e *keyEncoder) value(v ast.Value) {
	if !e.ok {
		return
	}
	if len(e.buf) > maxKeyBytes {
		e.ok = false
		return
	}
	switch x := v.(type) {
	case ast.Null:
		e.buf = append(e.buf, 'z')
	case ast.Boolean:
		if x {
			e.buf = append(e.buf, 't')
		} else {
			e.buf = append(e.buf, 'f')
		}
	case ast.Number:
		e.buf = append(e.buf, 'n')
		e.buf = binary.AppendUvarint(e.buf, uint64(len(x)))
		e.buf = append(e.buf, x...)
	case ast.String:
		e.buf = append(e.buf, 's')
		e.buf = binary.AppendUvarint(e.buf, uint64(len(x)))
		e.buf = append(e.buf, x...)
	case *ast.Array:
		e.buf = append(e.buf, 'a')
		e.buf = binary.AppendUvarint(e.buf, uint64(x.Len()))
		x.Foreach(e.elem)
	case ast.Object:
		e.buf = append(e.buf, 'o')
		e.buf = binary.AppendUvarint(e.buf, uint64(x.Len()))
		x.Foreach(e.pair)
	case ast.Set:
		e.buf = append(e.buf, 'e')
		e.buf = binary.AppendUvarint(e.buf, uint64(x.Len()))
		x.Foreach(e.elem)
	default:
		e.ok = false
	}
}

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

// DecisionCacheState says whether the serving revision caches decisions,
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
