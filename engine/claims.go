package engine

import (
	"cmp"
	"maps"
	"slices"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
)

// Which claims of input.token.claims a compiled policy can read, so that a
// cached token's input value can keep only those (the rest cannot change an
// answer). A claim is readable when the policy refers to it by a constant
// name: input.token.claims.<name>..., or object.get on input, input.token
// or input.token.claims with a constant key or path. Testing the type of
// input, input.token or input.token.claims (is_object and the like) reads
// no claim: a pruned value keeps its type. Anything else that reaches the
// claims (input or input.token or input.token.claims used as a value, a
// computed key under them, a with modifier) makes every claim readable.

// typeTests are the built-ins whose answer depends on their operand's type
// alone.
var typeTests = map[string]bool{
	"is_object": true, "is_string": true, "is_number": true, "is_boolean": true,
	"is_array": true, "is_set": true, "is_null": true, "type_name": true,
}

var objectGet = ast.ObjectGet.Ref()

// claimReads is what a policy can read of input.token.claims.
type claimReads struct {
	// all says why every claim may be read ("" when only names).
	all   string
	names []string // sorted; meaningless when all is set
}

// TokenClaims returns the names of input.token.claims the policy can read,
// sorted, or all true when it may read any claim (a caller must then show
// them all). A caller may leave the other claims out of input.token.claims:
// the answer cannot change.
func (s Snapshot) TokenClaims() (names []string, all bool) {
	if s.p == nil || s.p.reads.claims.all != "" {
		return nil, true
	}
	return s.p.reads.claims.names, false
}

// analyseClaims walks the decision query and every rule of the compiled
// modules for the claims they can read.
func analyseClaims(c *ast.Compiler, query ast.Ref) claimReads {
	cc := &claimCollector{names: map[string]bool{}}
	cc.vis = ast.NewGenericVisitor(cc.visit)
	cc.vis.Walk(query)
	for _, name := range slices.Sorted(maps.Keys(c.Modules)) {
		for _, rule := range c.Modules[name].Rules {
			cc.rule(rule)
		}
	}
	if cc.all != "" {
		return claimReads{all: cc.all}
	}
	return claimReads{names: slices.Sorted(maps.Keys(cc.names))}
}

type claimCollector struct {
	all   string
	names map[string]bool
	vis   *ast.GenericVisitor
	// aliases are the rule's variables bound to a reference under input
	// (the compiler binds a built-in's reference operands to generated
	// variables: is_object(input.token) is compiled to __local0__ =
	// input.token; is_object(__local0__)), and the expressions binding
	// them.
	aliases map[ast.Var][][]string
	binds   map[*ast.Expr]bool
}

func (cc *claimCollector) setAll(why string) { cc.all = cmp.Or(cc.all, why) }

// rule walks one rule (with its else branches) after finding its aliases.
func (cc *claimCollector) rule(rule *ast.Rule) {
	cc.aliases, cc.binds = map[ast.Var][][]string{}, map[*ast.Expr]bool{}
	ast.WalkExprs(rule, func(x *ast.Expr) bool {
		if v, p, ok := aliasOf(x); ok {
			cc.aliases[v] = append(cc.aliases[v], p)
			cc.binds[x] = true
		}
		return false
	})
	cc.vis.Walk(rule)
	cc.aliases, cc.binds = nil, nil
}

// aliasOf reports the variable and input path of v = input.<path> (or =,
// :=) with a generated variable and a path of string keys.
func aliasOf(x *ast.Expr) (ast.Var, []string, bool) {
	if x.Negated || len(x.With) > 0 || !x.IsCall() || len(x.Operands()) != 2 {
		return "", nil, false
	}
	if op := x.Operator(); !op.Equal(ast.Equality.Ref()) && !op.Equal(ast.Assign.Ref()) {
		return "", nil, false
	}
	a, b := x.Operand(0), x.Operand(1)
	if _, ok := b.Value.(ast.Var); ok {
		a, b = b, a
	}
	v, ok := a.Value.(ast.Var)
	if !ok || !v.IsGenerated() {
		return "", nil, false
	}
	if _, ok := b.Value.(ast.Ref); !ok {
		return "", nil, false
	}
	p, ok := inputPath(b)
	return v, p, ok
}

func (cc *claimCollector) visit(x any) bool {
	switch x := x.(type) {
	case *ast.Expr:
		if len(x.With) > 0 {
			cc.setAll("a with modifier can replace input")
		}
		if cc.binds[x] {
			// What the variable's uses read; the binding itself reads the
			// path's definedness, which pruning keeps for input, token
			// and claims.
			if _, p, _ := aliasOf(x); !isClaimsPrefix(p) {
				cc.path(p, false)
			}
			return true
		}
		if x.IsCall() {
			return cc.call(x.Operator(), x.Operands(), x.With)
		}
	case ast.Call:
		if len(x) > 0 {
			if op, ok := x[0].Value.(ast.Ref); ok {
				return cc.call(op, x[1:], nil)
			}
		}
	case ast.Ref:
		if !x[0].Equal(ast.InputRootDocument) {
			v, ok := x[0].Value.(ast.Var)
			if !ok || len(cc.aliases[v]) == 0 {
				return false
			}
			sub := stringPrefix(x)
			for _, p := range cc.aliases[v] {
				cc.path(append(slices.Clip(p), sub...), len(sub) < len(x)-1)
			}
			for _, t := range x[1:] {
				cc.vis.Walk(t)
			}
			return true
		}
		p := stringPrefix(x)
		cc.path(p, len(p) < len(x)-1)
		for _, t := range x[1+len(p):] {
			cc.vis.Walk(t)
		}
		return true
	case ast.Var:
		if x.Equal(ast.InputRootDocument.Value) {
			cc.setAll("the policy uses input as a whole")
		}
		for _, p := range cc.aliases[x] {
			cc.path(p, false)
		}
	}
	return false
}

// call handles a type test or an object.get it can read exactly; it
// reports false for the visitor to walk any other call as usual.
func (cc *claimCollector) call(op ast.Ref, args []*ast.Term, with []*ast.With) bool {
	if len(args) == 0 {
		return false
	}
	paths, ok := cc.inputPaths(args[0])
	if !ok {
		return false
	}
	switch {
	case typeTests[op.String()] && !slices.ContainsFunc(paths, func(p []string) bool { return !isClaimsPrefix(p) }):
		// The type of a value pruning keeps an object.
	case op.Equal(objectGet) && len(args) >= 3:
		keys, ok := constantKeys(args[1])
		if !ok {
			return false
		}
		for _, p := range paths {
			cc.path(append(slices.Clip(p), keys...), false)
		}
		args = args[1:] // the key is constant; walk the default and output
	default:
		return false
	}
	for _, t := range args[1:] {
		cc.vis.Walk(t)
	}
	for _, w := range with {
		cc.vis.Walk(w)
	}
	return true
}

// inputPaths are the paths under input t is: input, a reference under it
// with string keys alone, or an alias of such.
func (cc *claimCollector) inputPaths(t *ast.Term) ([][]string, bool) {
	if v, ok := t.Value.(ast.Var); ok && len(cc.aliases[v]) > 0 {
		return cc.aliases[v], true
	}
	p, ok := inputPath(t)
	if !ok {
		return nil, false
	}
	return [][]string{p}, true
}

// path records a read of input at p (string keys), followed by a computed
// key when computed.
func (cc *claimCollector) path(p []string, computed bool) {
	switch {
	case len(p) >= 3 && p[0] == "token" && p[1] == "claims":
		cc.names[p[2]] = true
	case isClaimsPrefix(p):
		if computed {
			cc.setAll("the policy reads " + pathString(p) + " under a computed key")
		} else {
			cc.setAll("the policy uses " + pathString(p) + " as a whole")
		}
	}
}

// isClaimsPrefix reports whether p is input, input.token or
// input.token.claims.
func isClaimsPrefix(p []string) bool {
	claims := [...]string{"token", "claims"}
	return len(p) <= 2 && slices.Equal(p, claims[:len(p)])
}

func pathString(p []string) string { return strings.Join(append([]string{"input"}, p...), ".") }

// stringPrefix is the leading string keys of ref after its head.
func stringPrefix(ref ast.Ref) []string {
	var p []string
	for _, t := range ref[1:] {
		s, ok := t.Value.(ast.String)
		if !ok {
			break
		}
		p = append(p, string(s))
	}
	return p
}

// inputPath is the path of t when it is input or a reference under input
// with string keys alone.
func inputPath(t *ast.Term) ([]string, bool) {
	switch v := t.Value.(type) {
	case ast.Var:
		return nil, v.Equal(ast.InputRootDocument.Value)
	case ast.Ref:
		if !v[0].Equal(ast.InputRootDocument) {
			return nil, false
		}
		p := stringPrefix(v)
		return p, len(p) == len(v)-1
	}
	return nil, false
}

// constantKeys is object.get's key when it is a string (one key) or an
// array of strings (a path).
func constantKeys(t *ast.Term) ([]string, bool) {
	switch v := t.Value.(type) {
	case ast.String:
		return []string{string(v)}, true
	case *ast.Array:
		keys := make([]string, 0, v.Len())
		for i := range v.Len() {
			s, ok := v.Elem(i).Value.(ast.String)
			if !ok {
				return nil, false
			}
			keys = append(keys, string(s))
		}
		return keys, true
	}
	return nil, false
}
