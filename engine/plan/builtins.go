package plan

import (
	"errors"
	"fmt"
	"regexp"
	"slices"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// pure are the built-ins a plan may call: each reads only its operands (no
// clock, network, randomness, environment or evaluation state), so OPA's
// own implementation, called here as topdown calls it, gives topdown's
// answer. A plan calling any other built-in is refused (ErrUnsupported) and
// its policy is evaluated by topdown.
var pure = map[string]bool{
	// comparison and arithmetic
	"equal": true, "neq": true, "gt": true, "gte": true, "lt": true, "lte": true,
	"plus": true, "minus": true, "mul": true, "div": true, "rem": true,
	"abs": true, "round": true, "ceil": true, "floor": true,
	// types
	"is_string": true, "is_number": true, "is_boolean": true, "is_array": true,
	"is_set": true, "is_object": true, "is_null": true, "type_name": true,
	// membership, aggregates, collections
	"internal.member_2": true, "internal.member_3": true,
	"count": true, "sum": true, "product": true, "max": true, "min": true, "sort": true,
	"and": true, "or": true,
	"array.concat": true, "array.slice": true, "array.reverse": true,
	"object.get": true, "object.union": true, "object.union_n": true, "object.remove": true,
	"object.filter": true, "object.keys": true, "object.subset": true,
	// strings
	"concat": true, "contains": true, "endswith": true, "startswith": true,
	"format_int": true, "indexof": true, "indexof_n": true, "lower": true, "upper": true,
	"replace": true, "split": true, "sprintf": true, "substring": true,
	"trim": true, "trim_left": true, "trim_prefix": true, "trim_right": true,
	"trim_suffix": true, "trim_space": true, "strings.replace_n": true,
	"strings.reverse": true, "strings.any_prefix_match": true,
	"strings.any_suffix_match": true, "strings.count": true,
	"regex.match": true, "regex.is_valid": true, "regex.split": true,
	"to_number": true,
	// documents
	"json.remove": true, "json.filter": true,
}

// builtin is a built-in call site's implementation.
type builtin struct {
	name string
	f    topdown.BuiltinFunc
	// re is regex.match's pattern where the policy writes it as a
	// constant: compiled once, as topdown compiles it, instead of looked
	// up in topdown's shared, locked cache on every call.
	re *regexp.Regexp
	// union is object.union, made natively where it can be (nativeUnion).
	union bool
}

func lookupBuiltin(name string, args []operand) (*builtin, error) {
	if !pure[name] {
		return nil, fmt.Errorf("%w: built-in %s", ErrUnsupported, name)
	}
	decl, ok := ast.BuiltinMap[name]
	f := topdown.GetBuiltin(name)
	if !ok || f == nil {
		return nil, fmt.Errorf("%w: built-in %s has no implementation", ErrUnsupported, name)
	}
	if len(args) != decl.Decl.Arity() {
		return nil, fmt.Errorf("plan: %s called with %d operands, takes %d", name, len(args), decl.Decl.Arity())
	}
	b := &builtin{name: name, f: f, union: name == "object.union"}
	if name == "regex.match" && args[0].term != nil {
		if pat, ok := args[0].term.Value.(ast.String); ok {
			// A pattern that does not compile is left to topdown's
			// implementation, which fails the call the same way each time.
			b.re, _ = regexp.Compile(string(pat))
		}
	}
	return b, nil
}

func (s *state) builtin(frame []*ast.Term, st *stmt) (int, error) {
	var args []*ast.Term
	if len(st.args) <= len(s.ops) {
		args = s.ops[:len(st.args)]
	} else {
		args = make([]*ast.Term, len(st.args))
	}
	for i, a := range st.args {
		if args[i] = s.val(frame, a); args[i] == nil {
			frame[st.target] = nil
			return 0, nil
		}
	}
	out, err := s.callBuiltin(st.bi, args)
	clear(args)
	frame[st.target] = out
	if err != nil {
		return 0, err
	}
	if out == nil {
		return 0, nil
	}
	return done, nil
}

// callBuiltin returns b's output for args, nil where it is undefined. As in
// topdown without strict built-in errors, a built-in's error makes the call
// undefined; only a halt is an error of the evaluation.
func (s *state) callBuiltin(b *builtin, args []*ast.Term) (*ast.Term, error) {
	if b.re != nil {
		str, ok := args[1].Value.(ast.String)
		if !ok {
			return nil, nil // topdown: operand 2 must be a string
		}
		return ast.InternedTerm(b.re.MatchString(string(str))), nil
	}
	if b.union {
		if out, ok := s.nativeUnion(args[0], args[1]); ok {
			return out, nil
		}
	}
	s.out = nil
	err := b.f(s.bctx, args, s.onOut)
	if err != nil {
		var halt topdown.Halt
		if errors.As(err, &halt) {
			return nil, fmt.Errorf("plan: %s: %w", b.name, halt.Err)
		}
		return nil, nil
	}
	return s.out, nil
}

// nativeUnion is object.union(a, b) where it is quick to make: as
// topdown's, a itself when b is empty or equal to it, b when a is empty,
// and otherwise, where no key is in both, one object of a's members and
// b's made at once (topdown merges member by member, through closures). It
// reports false for anything else (a key in both, an operand that is not
// an object), which topdown's implementation answers.
func (s *state) nativeUnion(a, b *ast.Term) (*ast.Term, bool) {
	oa, okA := a.Value.(ast.Object)
	ob, okB := b.Value.(ast.Object)
	if !okA || !okB {
		return nil, false
	}
	if oa.Len() == 0 {
		return b, true
	}
	if ob.Len() == 0 || oa.Compare(ob) == 0 {
		return a, true
	}
	s.pairs = s.pairs[:0]
	oa.Foreach(s.onPair)
	n := len(s.pairs)
	ob.Foreach(s.onPair)
	var out *ast.Term
	if !slices.ContainsFunc(s.pairs[n:], func(p [2]*ast.Term) bool { return oa.Get(p[0]) != nil }) {
		out = ast.NewTerm(ast.NewObject(s.pairs...))
	}
	clear(s.pairs)
	s.pairs = s.pairs[:0]
	return out, out != nil
}

func (s *state) addPair(k, v *ast.Term) { s.pairs = append(s.pairs, [2]*ast.Term{k, v}) }
