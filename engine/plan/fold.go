package plan

import "github.com/open-policy-agent/opa/v1/ast"

// Folding constant literals. The planner builds every composite literal of
// a policy ({"allowed": false, "http_status": 403}, say) statement by
// statement on each evaluation: a MakeObjectStmt, then an insert per key.
// Where every key and value is a constant, fold builds the value once, when
// the plan is compiled, and the evaluation only assigns it.
//
// A folded value is shared by every evaluation, so nothing may change it:
// it is frozen (its term's location is the frozen marker), and a statement
// that would change a frozen value in place changes a copy of it instead,
// which leaves the local with what it would have held unfolded. Where a
// literal cannot be folded, MakeObject is given the number of keys its
// block inserts, so that the object is made its size at once.

// frozen marks the terms fold made.
var frozen = &ast.Location{File: "(folded by engine/plan)"}

func isFrozen(t *ast.Term) bool { return t != nil && t.Location == frozen }

// thaw returns t to be changed in place: t itself, or a copy of t when it
// is frozen.
func thaw(t *ast.Term) *ast.Term {
	if !isFrozen(t) {
		return t
	}
	switch v := t.Value.(type) {
	case ast.Object:
		if v.Len() == 0 {
			return ast.NewTerm(ast.NewObject()) // (no members to copy through a closure)
		}
		obj := ast.NewObjectWithCapacity(v.Len() + 1)
		v.Foreach(func(k, e *ast.Term) { obj.Insert(k, e) })
		return ast.NewTerm(obj)
	case ast.Set:
		return ast.NewTerm(v.Copy())
	}
	return ast.NewTerm(t.Value) // an array: Append makes a new one anyway
}

func walkBlocks(blocks []*block, f func(*block)) {
	for _, b := range blocks {
		f(b)
		for i := range b.stmts {
			if st := &b.stmts[i]; st.block != nil {
				walkBlocks([]*block{st.block}, f)
			}
			walkBlocks(b.stmts[i].blocks, f)
		}
	}
}

func isMake(op opcode) bool { return op == opMakeObject || op == opMakeArray || op == opMakeSet }

func isChange(op opcode) bool {
	switch op {
	case opArrayAppend, opObjectInsert, opObjectInsertOnce, opSetAdd:
		return true
	}
	return false
}

// writes reports whether st assigns its target local.
func writes(st stmt) bool {
	switch st.op {
	case opAssignVar, opAssignVarOnce, opCall, opCallBuiltin, opCallDynamic, opDot, opLen,
		opMakeConst, opMakeArray, opMakeObject, opMakeSet, opObjectMerge, opResetLocal, opMakeObjectFrom, opMakeArrayFrom:
		return true
	}
	return false
}

// foldBlock folds the literals of b's own statements (nested blocks are
// walked on their own), innermost first: a pass folds a literal only once
// the literals inside it are constants, so passes go on while one folds a
// literal ({"messages": {"methods": {"GET"}}} takes three).
func foldBlock(b *block) {
	for makes := countMakes(b); ; {
		foldPass(b)
		n := countMakes(b)
		if n == makes {
			return
		}
		makes = n
	}
}

func countMakes(b *block) int {
	n := 0
	for _, st := range b.stmts {
		if isMake(st.op) {
			n++
		}
	}
	return n
}

// foldPass is one pass of foldBlock. known holds the constant each local
// holds at the current statement, where it is known.
func foldPass(b *block) {
	out := make([]stmt, 0, len(b.stmts))
	known := map[int]*ast.Term{}
	for i := 0; i < len(b.stmts); i++ {
		st := b.stmts[i]
		if !isMake(st.op) {
			switch {
			case st.block != nil || st.blocks != nil:
				clear(known) // a nested block may assign anything
			case st.op == opMakeConst:
				known[st.target] = st.a.term
			case writes(st):
				delete(known, st.target)
			}
			out = append(out, st)
			continue
		}
		// The run of this local's changes right after it, constants made
		// for them in between; terms are the constant operands of the
		// changes, as each change sees them.
		var (
			consts []stmt
			terms  []*ast.Term
			ok     = true
			// members are an object's keys and values in turn, as
			// operands, for makeFrom; byMembers whether it can take them.
			members   []operand
			byMembers = st.op == opMakeObject || st.op == opMakeArray
		)
		constant := func(o operand) *ast.Term {
			if o.term != nil {
				return o.term
			}
			return known[o.local]
		}
		j := i + 1
		for ; j < len(b.stmts); j++ {
			next := b.stmts[j]
			if next.op == opMakeConst && next.target != st.target {
				consts = append(consts, next)
				known[next.target] = next.a.term
				continue
			}
			if isMake(next.op) {
				// A literal inside this one, not folded yet: this one
				// waits for the next pass.
				ok, byMembers = false, false
				break
			}
			if next.target != st.target || !isChange(next.op) {
				break
			}
			k, v := constant(next.a), constant(next.b)
			switch _, str := termValue(k).(ast.String); {
			case st.op == opMakeArray && next.op == opArrayAppend && (k != nil || next.a.local != st.target):
				members = append(members, operand{term: k, local: next.a.local})
			case st.op == opMakeObject && str && (next.op == opObjectInsert || next.op == opObjectInsertOnce) &&
				(v != nil || next.b.local != st.target):
				members = append(members, operand{term: k}, operand{term: v, local: next.b.local})
			default:
				byMembers = false
			}
			switch {
			case st.op == opMakeObject && (next.op == opObjectInsert || next.op == opObjectInsertOnce) && k != nil && v != nil:
				terms = append(terms, k, v)
			case st.op == opMakeArray && next.op == opArrayAppend && k != nil,
				st.op == opMakeSet && next.op == opSetAdd && k != nil:
				terms = append(terms, k)
			default:
				ok = false
			}
		}
		if v := literal(st.op, terms); ok && v != nil {
			v.Location = frozen
			out = append(out, consts...)
			out = append(out, stmt{op: opMakeConst, target: st.target, a: operand{term: v}})
			known[st.target] = v
			i = j - 1
			continue
		}
		delete(known, st.target)
		if byMembers && makeFrom(st.op, members, consts) {
			op := opMakeObjectFrom
			if st.op == opMakeArray {
				op = opMakeArrayFrom
			}
			out = append(out, consts...)
			out = append(out, stmt{op: op, target: st.target, args: members})
			i = j - 1
			continue
		}
		if st.op == opMakeObject {
			st.index = 0 // counted afresh on each pass
			for _, next := range b.stmts[i+1:] {
				if next.target == st.target && isChange(next.op) {
					st.index++
				}
			}
		}
		out = append(out, st)
		out = append(out, b.stmts[i+1:j]...)
		i = j - 1
	}
	b.stmts = out
}

// makeFrom reports whether an object of members (keys and values in
// turn) or an array of members (its elements) can be made at once, by
// opMakeObjectFrom or opMakeArrayFrom, once consts (the constants the run
// of changes makes in between) have been made: an object's keys are
// distinct strings, and no constant is made in a local whose value a
// change reads before that constant is made.
func makeFrom(mk opcode, members []operand, consts []stmt) bool {
	if len(members) == 0 {
		return false
	}
	step, keys := 1, map[ast.String]bool{}
	if mk == opMakeObject {
		step = 2
		for i := 0; i < len(members); i += 2 {
			k := members[i].term.Value.(ast.String)
			if keys[k] {
				return false
			}
			keys[k] = true
		}
	}
	for i := step - 1; i < len(members); i += step {
		if v := members[i]; v.term == nil {
			for _, c := range consts {
				if c.target == v.local {
					return false
				}
			}
		}
	}
	return true
}

// literal is the value a Make statement mk builds of terms (keys and
// values in turn for an object), nil where two values of a key conflict.
func literal(mk opcode, terms []*ast.Term) *ast.Term {
	switch mk {
	case opMakeObject:
		obj := ast.NewObjectWithCapacity(len(terms) / 2)
		for i := 0; i < len(terms); i += 2 {
			if cur := obj.Get(terms[i]); cur != nil && cur.Value.Compare(terms[i+1].Value) != 0 {
				return nil // a conflict: left to the evaluation to report
			}
			obj.Insert(terms[i], terms[i+1])
		}
		return ast.NewTerm(obj)
	case opMakeArray:
		return ast.ArrayTerm(terms...)
	default:
		return ast.SetTerm(terms...)
	}
}
