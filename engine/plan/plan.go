// Package plan evaluates a policy's compiled plan: the intermediate
// representation (package ir) OPA's planner makes of a query and the rules
// it reaches, the form OPA compiles to WebAssembly. Evaluating the plan
// skips what topdown does on every evaluation (unification, rule indexing,
// binding lists, the built-in call machinery), so a decision the caches do
// not answer costs a fraction of topdown's time and allocations.
//
// OPA hands the plan over through rego's target plugin interface: this
// package registers the target Target, and Prepare plans the decision query
// of a compiled policy through it. The statements follow the semantics of
// OPA's own plan compiler (internal/compiler/wasm): a statement that is
// undefined ends its block, a break leaves as many enclosing blocks as its
// index says, rules without arguments are evaluated once per evaluation.
//
// A plan this package does not handle is refused when it is prepared, with
// an error wrapping ErrUnsupported that names the construct: a built-in
// outside the set in builtins.go (one that reads the clock, the network or
// randomness, say). The caller then evaluates that policy with topdown. An
// evaluation that errors (a conflict between two rule values, a built-in
// that halts) returns the error, and the caller asks topdown, whose answer
// and error are OPA's own.
package plan

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/ir"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage"
)

// Target is the rego target this package registers.
const Target = "guestgate-plan"

// ErrUnsupported means a plan holds a statement or a built-in call this
// package does not evaluate.
var ErrUnsupported = errors.New("plan: not handled by the plan evaluator")

func init() { rego.RegisterPlugin(Target, plugin{}) }

// Prepare plans query (a reference into data) against compiler's compiled
// modules and returns its evaluator over data, the root document of store
// (the same store and transaction topdown evaluates against).
func Prepare(ctx context.Context, compiler *ast.Compiler, query ast.Ref, store storage.Store, txn storage.Transaction, data ast.Value) (*Plan, error) {
	c := &capture{data: data}
	_, err := rego.New(
		rego.ParsedQuery(ast.NewBody(ast.NewExpr(ast.NewTerm(query.Copy())))),
		rego.Compiler(compiler),
		rego.Store(store),
		rego.Transaction(txn),
		rego.Target(Target),
		// The plugin target would switch the shared compiler to IR mode,
		// which skips building the indices topdown evaluates with.
		rego.EvalMode(ast.EvalModeTopdown),
	).PrepareForEval(context.WithValue(ctx, captureKey{}, c))
	if err != nil {
		return nil, err
	}
	if c.plan == nil {
		return nil, errors.New("plan: rego did not hand over the plan")
	}
	return c.plan, nil
}

type captureKey struct{}

// capture carries the data in and the prepared plan out of rego's
// PrepareForEval, which knows neither.
type capture struct {
	data ast.Value
	plan *Plan
}

type plugin struct{}

func (plugin) IsTarget(t string) bool { return t == Target }

func (plugin) PrepareForEval(ctx context.Context, policy *ir.Policy, _ ...rego.PrepareOption) (rego.TargetPluginEval, error) {
	c, ok := ctx.Value(captureKey{}).(*capture)
	if !ok {
		return nil, errors.New("plan: the " + Target + " target is prepared through plan.Prepare, which gives it the data")
	}
	p, err := compile(policy)
	if err != nil {
		return nil, err
	}
	p.data = ast.NewTerm(c.data)
	c.plan = p
	return regoEval{p}, nil
}

// Plan is a prepared decision query. It is safe for concurrent use.
type Plan struct {
	blocks []*block
	funcs  []*function
	data   *ast.Term
	// locals is how many locals the query's blocks use.
	locals int
}

// function is a planned rule or function.
type function struct {
	name   string
	index  int
	params []int
	blocks []*block
	locals int
	// memo: a rule (its only parameters are input and data), evaluated once
	// per evaluation.
	memo bool
}

type block struct{ stmts []stmt }

type opcode uint8

const (
	opNop opcode = iota
	opArrayAppend
	opAssignVar
	opAssignVarOnce
	opBlock
	opBreak
	opCall
	opCallBuiltin
	opCallDynamic
	opDot
	opEqual
	opNotEqual
	opIsArray
	opIsObject
	opIsSet
	opIsDefined
	opIsUndefined
	opLen
	opMakeConst // MakeNull, MakeNumberInt, MakeNumberRef, AssignInt: a constant term
	opMakeArray
	opMakeArrayFrom // a MakeArrayStmt and its appends, made at once (fold.go)
	opMakeObject
	opMakeObjectFrom // a MakeObjectStmt and its inserts, made at once (fold.go)
	opMakeSet
	opNot
	opObjectInsert
	opObjectInsertOnce
	opObjectMerge
	opResetLocal
	opResultSetAdd
	opResultValue // a ResultSetAddStmt of the object {a: b} (results.go)
	opReturnLocal
	opScan
	opSetAdd
	opWith
)

// operand is a local (term nil) or a constant.
type operand struct {
	local int
	term  *ast.Term
}

// stmt is one statement, its operands resolved when the plan is compiled.
type stmt struct {
	op     opcode
	a, b   operand
	target int // the local written, or a ScanStmt's key
	value  int // a ScanStmt's value local
	index  int // a BreakStmt's index; a MakeArrayStmt's or MakeObjectStmt's capacity
	block  *block
	blocks []*block
	fn     *function
	bi     *builtin
	args   []operand
	// path is a CallDynamicStmt's path and a WithStmt's (constant keys).
	path []operand
	// dyn maps a CallDynamicStmt's path to the functions it may call.
	dyn *dynNode
}

// dynNode is a tree of the functions a dynamic call can reach, by path.
type dynNode struct {
	next map[string]*dynNode
	fn   *function
}

// compiler turns an ir.Policy into a Plan.
type compiler struct {
	strings []*ast.Term
	funcs   map[string]*function
	dyn     *dynNode
	// locals is the highest local seen in the function being compiled.
	locals int
}

func compile(policy *ir.Policy) (*Plan, error) {
	if policy.Static == nil || policy.Plans == nil || len(policy.Plans.Plans) != 1 {
		return nil, fmt.Errorf("%w: a policy with %s", ErrUnsupported, planCount(policy))
	}
	c := &compiler{funcs: map[string]*function{}, dyn: &dynNode{}}
	for _, s := range policy.Static.Strings {
		c.strings = append(c.strings, ast.StringTerm(s.Value))
	}
	p := &Plan{}
	var funcs []*ir.Func
	if policy.Funcs != nil {
		funcs = policy.Funcs.Funcs
	}
	// Every function exists before any body refers to it.
	for i, f := range funcs {
		fn := &function{name: f.Name, index: i, memo: len(f.Params) == 2}
		for _, l := range f.Params {
			fn.params = append(fn.params, int(l))
		}
		c.funcs[f.Name] = fn
		p.funcs = append(p.funcs, fn)
		if len(f.Path) > 0 {
			n := c.dyn
			for _, seg := range f.Path {
				if n.next == nil {
					n.next = map[string]*dynNode{}
				}
				if n.next[seg] == nil {
					n.next[seg] = &dynNode{}
				}
				n = n.next[seg]
			}
			n.fn = fn
		}
	}
	for i, f := range funcs {
		fn := p.funcs[i]
		c.locals = int(f.Return)
		for _, l := range fn.params {
			c.locals = max(c.locals, l)
		}
		var err error
		if fn.blocks, err = c.blocks(f.Blocks); err != nil {
			return nil, fmt.Errorf("%w (in %s)", err, f.Name)
		}
		fn.locals = c.locals + 1
	}
	c.locals = int(ir.Data)
	var err error
	if p.blocks, err = c.blocks(policy.Plans.Plans[0].Blocks); err != nil {
		return nil, err
	}
	p.locals = c.locals + 1
	directResults(p.blocks)
	walkBlocks(p.blocks, foldBlock)
	for _, fn := range p.funcs {
		walkBlocks(fn.blocks, foldBlock)
	}
	return p, nil
}

func planCount(policy *ir.Policy) string {
	if policy.Plans == nil {
		return "no plan"
	}
	return fmt.Sprintf("%d plans", len(policy.Plans.Plans))
}

func (c *compiler) blocks(bs []*ir.Block) ([]*block, error) {
	out := make([]*block, 0, len(bs))
	for _, b := range bs {
		nb, err := c.block(b)
		if err != nil {
			return nil, err
		}
		out = append(out, nb)
	}
	return out, nil
}

func (c *compiler) block(b *ir.Block) (*block, error) {
	nb := &block{stmts: make([]stmt, 0, len(b.Stmts))}
	for _, s := range b.Stmts {
		ns, err := c.stmt(s)
		if err != nil {
			return nil, err
		}
		nb.stmts = append(nb.stmts, ns)
	}
	return nb, nil
}

// local records l as used and returns it.
func (c *compiler) local(l ir.Local) int {
	c.locals = max(c.locals, int(l))
	return int(l)
}

func (c *compiler) operand(o ir.Operand) (operand, error) {
	switch v := o.Value.(type) {
	case ir.Local:
		return operand{local: c.local(v)}, nil
	case ir.StringIndex:
		if int(v) < 0 || int(v) >= len(c.strings) {
			return operand{}, fmt.Errorf("plan: string constant %d out of range", v)
		}
		return operand{term: c.strings[v]}, nil
	case ir.Bool:
		return operand{term: ast.InternedTerm(bool(v))}, nil
	default:
		return operand{}, fmt.Errorf("%w: operand %T", ErrUnsupported, o.Value)
	}
}

func (c *compiler) operands(os []ir.Operand) ([]operand, error) {
	out := make([]operand, len(os))
	for i, o := range os {
		var err error
		if out[i], err = c.operand(o); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// number is the constant term of a number written as s.
func number(s string) *ast.Term {
	if t := ast.InternedIntNumberTermFromString(s); t != nil {
		return t
	}
	return ast.NewTerm(ast.Number(s))
}

func (c *compiler) stmt(s ir.Stmt) (stmt, error) {
	var (
		n   stmt
		err error
	)
	two := func(a, b ir.Operand) {
		if n.a, err = c.operand(a); err == nil {
			n.b, err = c.operand(b)
		}
	}
	switch s := s.(type) {
	case *ir.NopStmt:
		n.op = opNop
	case *ir.ArrayAppendStmt:
		n.op, n.target = opArrayAppend, c.local(s.Array)
		n.a, err = c.operand(s.Value)
	case *ir.AssignIntStmt:
		n.op, n.target, n.a = opMakeConst, c.local(s.Target), operand{term: ast.InternedTerm(int(s.Value))}
	case *ir.AssignVarStmt:
		n.op, n.target = opAssignVar, c.local(s.Target)
		n.a, err = c.operand(s.Source)
	case *ir.AssignVarOnceStmt:
		n.op, n.target = opAssignVarOnce, c.local(s.Target)
		n.a, err = c.operand(s.Source)
	case *ir.BlockStmt:
		n.op = opBlock
		n.blocks, err = c.blocks(s.Blocks)
	case *ir.BreakStmt:
		n.op, n.index = opBreak, int(s.Index)
	case *ir.CallStmt:
		n.target = c.local(s.Result)
		if n.args, err = c.operands(s.Args); err != nil {
			break
		}
		if fn, ok := c.funcs[s.Func]; ok {
			n.op, n.fn = opCall, fn
			if len(n.args) != len(fn.params) {
				err = fmt.Errorf("plan: %s called with %d arguments, takes %d", s.Func, len(n.args), len(fn.params))
			}
			break
		}
		n.op = opCallBuiltin
		n.bi, err = lookupBuiltin(s.Func, n.args)
	case *ir.CallDynamicStmt:
		n.op, n.target, n.dyn = opCallDynamic, c.local(s.Result), c.dyn
		for _, a := range s.Args {
			n.args = append(n.args, operand{local: c.local(a)})
		}
		n.path, err = c.operands(s.Path)
	case *ir.DotStmt:
		n.op, n.target = opDot, c.local(s.Target)
		two(s.Source, s.Key)
	case *ir.EqualStmt:
		n.op = opEqual
		two(s.A, s.B)
	case *ir.NotEqualStmt:
		n.op = opNotEqual
		two(s.A, s.B)
	case *ir.IsArrayStmt:
		n.op = opIsArray
		n.a, err = c.operand(s.Source)
	case *ir.IsObjectStmt:
		n.op = opIsObject
		n.a, err = c.operand(s.Source)
	case *ir.IsSetStmt:
		n.op = opIsSet
		n.a, err = c.operand(s.Source)
	case *ir.IsDefinedStmt:
		n.op, n.a = opIsDefined, operand{local: c.local(s.Source)}
	case *ir.IsUndefinedStmt:
		n.op, n.a = opIsUndefined, operand{local: c.local(s.Source)}
	case *ir.LenStmt:
		n.op, n.target = opLen, c.local(s.Target)
		n.a, err = c.operand(s.Source)
	case *ir.MakeNullStmt:
		n.op, n.target, n.a = opMakeConst, c.local(s.Target), operand{term: ast.InternedNullTerm}
	case *ir.MakeNumberIntStmt:
		n.op, n.target, n.a = opMakeConst, c.local(s.Target), operand{term: ast.InternedTerm(int(s.Value))}
	case *ir.MakeNumberRefStmt:
		if s.Index < 0 || s.Index >= len(c.strings) {
			return n, fmt.Errorf("plan: number constant %d out of range", s.Index)
		}
		n.op, n.target = opMakeConst, c.local(s.Target)
		n.a = operand{term: number(string(c.strings[s.Index].Value.(ast.String)))}
	case *ir.MakeArrayStmt:
		n.op, n.target, n.index = opMakeArray, c.local(s.Target), int(max(s.Capacity, 0))
	case *ir.MakeObjectStmt:
		n.op, n.target = opMakeObject, c.local(s.Target)
	case *ir.MakeSetStmt:
		n.op, n.target = opMakeSet, c.local(s.Target)
	case *ir.NotStmt:
		n.op = opNot
		n.block, err = c.block(s.Block)
	case *ir.ObjectInsertStmt:
		n.op, n.target = opObjectInsert, c.local(s.Object)
		two(s.Key, s.Value)
	case *ir.ObjectInsertOnceStmt:
		n.op, n.target = opObjectInsertOnce, c.local(s.Object)
		two(s.Key, s.Value)
	case *ir.ObjectMergeStmt:
		n.op, n.target = opObjectMerge, c.local(s.Target)
		n.a, n.b = operand{local: c.local(s.A)}, operand{local: c.local(s.B)}
	case *ir.ResetLocalStmt:
		n.op, n.target = opResetLocal, c.local(s.Target)
	case *ir.ResultSetAddStmt:
		n.op, n.a = opResultSetAdd, operand{local: c.local(s.Value)}
	case *ir.ReturnLocalStmt:
		n.op, n.a = opReturnLocal, operand{local: c.local(s.Source)}
	case *ir.ScanStmt:
		n.op, n.a = opScan, operand{local: c.local(s.Source)}
		n.target, n.value = c.local(s.Key), c.local(s.Value)
		n.block, err = c.block(s.Block)
	case *ir.SetAddStmt:
		n.op, n.target = opSetAdd, c.local(s.Set)
		n.a, err = c.operand(s.Value)
	case *ir.WithStmt:
		n.op, n.target = opWith, c.local(s.Local)
		if n.a, err = c.operand(s.Value); err != nil {
			break
		}
		for _, i := range s.Path {
			if i < 0 || i >= len(c.strings) {
				return n, fmt.Errorf("plan: with path constant %d out of range", i)
			}
			n.path = append(n.path, operand{term: c.strings[i]})
		}
		n.block, err = c.block(s.Block)
	default:
		return n, fmt.Errorf("%w: statement %s", ErrUnsupported, strings.TrimPrefix(fmt.Sprintf("%T", s), "*ir."))
	}
	return n, err
}
