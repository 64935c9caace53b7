package plan

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/ir"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// What a statement tells the block it is in: go on, or leave blocks. A
// code k >= 0 leaves k+1 blocks, the current one first: 0 is a statement
// that is undefined (or BreakStmt 0). A block that reaches its end returns
// done; a ReturnLocalStmt returns returned up to its function.
const (
	done     = -1
	returned = -2
)

// Errors an evaluation may return (the caller then asks topdown).
var (
	// ErrConflict means two values were given to one complete rule or
	// object key, which topdown reports as an eval_conflict_error.
	ErrConflict = errors.New("plan: conflicting values")
	// ErrResult means the plan's result set is not one object per result
	// holding one value.
	ErrResult = errors.New("plan: unexpected result set")
)

// checkEvery is how many statements run between two looks at the context.
const checkEvery = 1 << 10

// state is one evaluation's: the locals of every active call, one stack.
type state struct {
	ctx     context.Context
	stack   []*ast.Term
	memo    []memoSlot
	results []result
	// scanners are the scans of objects active, innermost last, each
	// with its callback bound once (scan).
	scanners []*scanner
	depth    int
	// pairs and onPair collect an object's members (nativeUnion).
	pairs  [][2]*ast.Term
	onPair func(k, v *ast.Term)
	// ret is the value of the last ReturnLocalStmt, for its call.
	ret   *ast.Term
	steps int
	// out is a built-in's output; onOut, bound once, sets it.
	out   *ast.Term
	onOut func(*ast.Term) error
	ops   [8]*ast.Term
	bctx  topdown.BuiltinContext
}

type memoSlot struct {
	done  bool
	value *ast.Term
}

var states = sync.Pool{New: func() any {
	s := &state{}
	s.onOut, s.onPair = s.setOut, s.addPair
	return s
}}

func (s *state) setOut(t *ast.Term) error {
	s.out = t
	return nil
}

// Eval evaluates the plan for input and returns the decision; defined is
// false when the query is undefined.
func (p *Plan) Eval(ctx context.Context, input ast.Value) (value ast.Value, defined bool, err error) {
	return p.eval(ctx, input, nil)
}

// eval is Eval; with results set, it also appends the plan's result set
// (the objects binding the query's variables) to it.
func (p *Plan) eval(ctx context.Context, input ast.Value, results *[]*ast.Term) (value ast.Value, defined bool, err error) {
	s := states.Get().(*state)
	defer func() {
		clear(s.stack[:cap(s.stack)])
		clear(s.results)
		clear(s.pairs)
		s.stack, s.results, s.ret, s.out, s.ctx = s.stack[:0], s.results[:0], nil, nil, nil
		s.pairs, s.depth = s.pairs[:0], 0
		s.bctx = topdown.BuiltinContext{}
		states.Put(s)
	}()
	s.ctx = ctx
	s.bctx.Context = ctx
	s.steps = 0
	if cap(s.memo) < len(p.funcs) {
		s.memo = make([]memoSlot, len(p.funcs))
	}
	s.memo = s.memo[:len(p.funcs)]
	clear(s.memo)

	frame := s.push(p.locals)
	if input != nil {
		frame[ir.Input] = ast.NewTerm(input)
	}
	frame[ir.Data] = p.data
	for _, b := range p.blocks {
		if _, err := s.block(frame, b); err != nil {
			return nil, false, err
		}
	}
	if results != nil {
		for _, r := range s.results {
			*results = append(*results, r.term())
		}
	}
	switch len(s.results) {
	case 0:
		return nil, false, nil
	case 1:
	default:
		return nil, false, fmt.Errorf("%w: %d results", ErrResult, len(s.results))
	}
	if r := s.results[0]; r.key != nil {
		return r.value.Value, true, nil
	}
	obj, ok := s.results[0].value.Value.(ast.Object)
	if !ok || obj.Len() != 1 {
		return nil, false, fmt.Errorf("%w: a result of type %s", ErrResult, ast.ValueName(s.results[0].value.Value))
	}
	var v *ast.Term
	obj.Foreach(func(_, t *ast.Term) { v = t })
	return v.Value, true, nil
}

// regoEval is the rego.TargetPluginEval a PreparedEvalQuery of Target
// calls: the result set as rego expects it, a set of objects.
type regoEval struct{ p *Plan }

func (r regoEval) Eval(ctx context.Context, ectx *rego.EvalContext, _ ast.Value) (ast.Value, error) {
	input := ectx.ParsedInput()
	if input == nil && ectx.RawInput() != nil {
		var err error
		if input, err = ast.InterfaceToValue(*ectx.RawInput()); err != nil {
			return nil, err
		}
	}
	var results []*ast.Term
	if _, _, err := r.p.eval(ctx, input, &results); err != nil {
		return nil, err
	}
	return ast.NewSet(results...), nil
}

// push makes a frame of n undefined locals on the stack. Frames are only
// reached through the slice push returns, so the stack growing under an
// active frame leaves that frame where it was.
func (s *state) push(n int) []*ast.Term {
	base := len(s.stack)
	if cap(s.stack)-base < n {
		grown := make([]*ast.Term, base, 2*cap(s.stack)+n)
		copy(grown, s.stack)
		s.stack = grown
	}
	s.stack = s.stack[:base+n]
	frame := s.stack[base : base+n : base+n]
	clear(frame)
	return frame
}

func (s *state) val(frame []*ast.Term, o operand) *ast.Term {
	if o.term != nil {
		return o.term
	}
	return frame[o.local]
}

// block runs b's statements and returns the code of the one that stopped
// it (not yet counted against b), or done.
func (s *state) block(frame []*ast.Term, b *block) (int, error) {
	for i := range b.stmts {
		code, err := s.stmt(frame, &b.stmts[i])
		if err != nil {
			return 0, err
		}
		if code != done {
			return code, nil
		}
	}
	return done, nil
}

// nested runs b as a block of its own inside the current one: the code
// for the current block.
func (s *state) nested(frame []*ast.Term, b *block) (int, error) {
	code, err := s.block(frame, b)
	if code > 0 {
		code--
	} else if code == 0 {
		code = done
	}
	return code, err
}

func (s *state) stmt(frame []*ast.Term, st *stmt) (int, error) {
	if s.steps++; s.steps%checkEvery == 0 {
		if err := s.ctx.Err(); err != nil {
			return 0, err
		}
	}
	switch st.op {
	case opNop:
	case opArrayAppend:
		arr, ok := termValue(frame[st.target]).(*ast.Array)
		v := s.val(frame, st.a)
		if !ok || v == nil {
			return 0, fmt.Errorf("plan: appending to %s", typeOf(frame[st.target]))
		}
		frame[st.target] = ast.NewTerm(arr.Append(v))
	case opAssignVar:
		frame[st.target] = s.val(frame, st.a)
	case opAssignVarOnce:
		v := s.val(frame, st.a)
		if cur := frame[st.target]; cur != nil {
			if v == nil || cur.Value.Compare(v.Value) != 0 {
				return 0, ErrConflict
			}
			return done, nil
		}
		frame[st.target] = v
	case opBlock:
		for _, b := range st.blocks {
			code, err := s.nested(frame, b)
			if err != nil || code != done {
				return code, err
			}
		}
	case opBreak:
		return st.index, nil
	case opCall:
		return s.call(frame, st)
	case opCallBuiltin:
		return s.builtin(frame, st)
	case opCallDynamic:
		return s.callDynamic(frame, st)
	case opDot:
		src, key := s.val(frame, st.a), s.val(frame, st.b)
		var v *ast.Term
		if src != nil && key != nil {
			v = get(src.Value, key)
		}
		frame[st.target] = v
		if v == nil {
			return 0, nil
		}
	case opEqual, opNotEqual:
		a, b := s.val(frame, st.a), s.val(frame, st.b)
		eq := a == nil && b == nil || a != nil && b != nil && a.Value.Compare(b.Value) == 0
		if eq != (st.op == opEqual) {
			return 0, nil
		}
	case opIsArray, opIsObject, opIsSet:
		var ok bool
		switch termValue(s.val(frame, st.a)).(type) {
		case *ast.Array:
			ok = st.op == opIsArray
		case ast.Object:
			ok = st.op == opIsObject
		case ast.Set:
			ok = st.op == opIsSet
		}
		if !ok {
			return 0, nil
		}
	case opIsDefined:
		if frame[st.a.local] == nil {
			return 0, nil
		}
	case opIsUndefined:
		if frame[st.a.local] != nil {
			return 0, nil
		}
	case opLen:
		var n int
		switch v := termValue(s.val(frame, st.a)).(type) {
		case *ast.Array:
			n = v.Len()
		case ast.Object:
			n = v.Len()
		case ast.Set:
			n = v.Len()
		default:
			return 0, fmt.Errorf("plan: length of %s", typeOf(s.val(frame, st.a)))
		}
		frame[st.target] = ast.InternedTerm(n)
	case opMakeConst:
		frame[st.target] = st.a.term
	case opMakeArray:
		frame[st.target] = ast.NewTerm(ast.NewArrayWithCapacity(st.index))
	case opMakeObject:
		frame[st.target] = ast.NewTerm(ast.NewObjectWithCapacity(st.index))
	case opMakeArrayFrom:
		elems := make([]*ast.Term, len(st.args))
		for i, o := range st.args {
			if elems[i] = s.val(frame, o); elems[i] == nil {
				return 0, errors.New("plan: appending to array")
			}
		}
		frame[st.target] = ast.NewTerm(ast.NewArray(elems...))
	case opMakeObjectFrom:
		var buf [8][2]*ast.Term
		members := buf[:0]
		for i := 0; i < len(st.args); i += 2 {
			v := s.val(frame, st.args[i+1])
			if v == nil {
				return 0, errors.New("plan: inserting into object")
			}
			members = append(members, [2]*ast.Term{st.args[i].term, v})
		}
		frame[st.target] = ast.NewTerm(ast.NewObject(members...))
	case opMakeSet:
		frame[st.target] = ast.NewTerm(ast.NewSet())
	case opNot:
		code, err := s.block(frame, st.block)
		switch {
		case err != nil || code == returned:
			return code, err
		case code == done:
			return 0, nil // the negated block held: not is undefined
		case code == 0:
			return done, nil
		default:
			return code - 1, nil
		}
	case opObjectInsert, opObjectInsertOnce:
		frame[st.target] = thaw(frame[st.target])
		obj, ok := termValue(frame[st.target]).(ast.Object)
		k, v := s.val(frame, st.a), s.val(frame, st.b)
		if !ok || k == nil || v == nil {
			return 0, fmt.Errorf("plan: inserting into %s", typeOf(frame[st.target]))
		}
		if st.op == opObjectInsertOnce {
			if cur := obj.Get(k); cur != nil {
				if cur.Value.Compare(v.Value) != 0 {
					return 0, ErrConflict
				}
				return done, nil
			}
		}
		obj.Insert(k, v)
	case opObjectMerge:
		a, b := frame[st.a.local], frame[st.b.local]
		switch {
		case a == nil:
			frame[st.target] = b
		case b == nil:
			frame[st.target] = a
		default:
			oa, okA := a.Value.(ast.Object)
			ob, okB := b.Value.(ast.Object)
			if !okA || !okB {
				return 0, ErrConflict
			}
			m, ok := oa.Merge(ob)
			if !ok {
				return 0, ErrConflict
			}
			frame[st.target] = ast.NewTerm(m)
		}
	case opResetLocal:
		frame[st.target] = nil
	case opResultSetAdd:
		if v := frame[st.a.local]; v != nil {
			s.addResult(nil, v)
		}
	case opResultValue:
		v := s.val(frame, st.b)
		if v == nil {
			return 0, errors.New("plan: inserting into object")
		}
		s.addResult(st.a.term, v)
	case opReturnLocal:
		s.ret = frame[st.a.local]
		return returned, nil
	case opScan:
		return s.scan(frame, st)
	case opSetAdd:
		frame[st.target] = thaw(frame[st.target])
		set, ok := termValue(frame[st.target]).(ast.Set)
		v := s.val(frame, st.a)
		if !ok || v == nil {
			return 0, fmt.Errorf("plan: adding to %s", typeOf(frame[st.target]))
		}
		set.Add(v)
	case opWith:
		return s.with(frame, st)
	default:
		return 0, fmt.Errorf("plan: opcode %d", st.op)
	}
	return done, nil
}

// get is source[key], nil where it is undefined (a scalar, a missing key).
func get(source ast.Value, key *ast.Term) *ast.Term {
	switch v := source.(type) {
	case ast.Object:
		return v.Get(key)
	case *ast.Array:
		return v.Get(key)
	case ast.Set:
		if v.Contains(key) {
			return key
		}
	}
	return nil
}

func termValue(t *ast.Term) ast.Value {
	if t == nil {
		return nil
	}
	return t.Value
}

func typeOf(t *ast.Term) string {
	if t == nil {
		return "an undefined local"
	}
	return ast.ValueName(t.Value)
}

// run runs a function's blocks in a new frame and returns its value, nil
// when it returned none.
func (s *state) run(fn *function, frame []*ast.Term) (*ast.Term, error) {
	s.ret = nil
	for _, b := range fn.blocks {
		code, err := s.block(frame, b)
		if err != nil {
			return nil, err
		}
		if code == returned {
			return s.ret, nil
		}
	}
	return nil, nil
}

func (s *state) call(frame []*ast.Term, st *stmt) (int, error) {
	fn := st.fn
	var v *ast.Term
	if m := &s.memo[fn.index]; fn.memo && m.done {
		v = m.value
	} else {
		base := len(s.stack)
		callee := s.push(fn.locals)
		for i, p := range fn.params {
			callee[p] = s.val(frame, st.args[i])
		}
		var err error
		v, err = s.run(fn, callee)
		s.stack = s.stack[:base]
		if err != nil {
			return 0, err
		}
		if fn.memo {
			s.memo[fn.index] = memoSlot{done: true, value: v}
		}
	}
	frame[st.target] = v
	if v == nil {
		return 0, nil
	}
	return done, nil
}

// callDynamic calls the function at a path computed at run time, as
// data.optional_headers[input.kind] does. No function at that path is
// undefined; a function there that is undefined leaves the block the
// planner built for the call (break 3, as OPA's plan compiler does).
func (s *state) callDynamic(frame []*ast.Term, st *stmt) (int, error) {
	n := st.dyn
	for _, o := range st.path {
		seg, ok := termValue(s.val(frame, o)).(ast.String)
		if !ok {
			return 0, nil
		}
		if n = n.next[string(seg)]; n == nil {
			return 0, nil
		}
	}
	if n.fn == nil || len(n.fn.params) != len(st.args) {
		return 0, nil
	}
	code, err := s.call(frame, &stmt{op: opCall, fn: n.fn, args: st.args, target: st.target})
	if err == nil && code == 0 {
		return 3, nil
	}
	return code, err
}

// with evaluates its block with a local (input or data), or a path in it,
// replaced; rules are evaluated afresh under the replacement.
func (s *state) with(frame []*ast.Term, st *stmt) (int, error) {
	saved, memo := frame[st.target], s.memo
	s.memo = make([]memoSlot, len(memo))
	defer func() { frame[st.target], s.memo = saved, memo }()
	v := s.val(frame, st.a)
	if len(st.path) > 0 {
		v = upsert(saved, st.path, v)
	}
	frame[st.target] = v
	code, err := s.block(frame, st.block)
	switch {
	case err != nil || code == returned:
		return code, err
	case code == done:
		return done, nil
	case code <= 1:
		return 0, nil
	default:
		return code - 1, nil
	}
}

// upsert is doc with value at path, doc left as it was: the objects on
// the path are copied, and made where missing or not objects.
func upsert(doc *ast.Term, path []operand, value *ast.Term) *ast.Term {
	obj, ok := termValue(doc).(ast.Object)
	if ok {
		obj = obj.Copy()
	} else {
		obj = ast.NewObject()
	}
	key := path[0].term
	if len(path) == 1 {
		obj.Insert(key, value)
	} else {
		obj.Insert(key, upsert(obj.Get(key), path[1:], value))
	}
	return ast.NewTerm(obj)
}
