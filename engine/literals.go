package engine

import "github.com/open-policy-agent/opa/v1/ast"

// maxLiteral bounds the literals Literals reports: reasons are short.
const maxLiteral = 64

// Literals are the string constants written in the revision's policy
// modules, up to 64 bytes each: every reason a policy gives as a constant
// (all of the shipped policy's) is one. A caller that labels metrics with
// a policy's reasons keeps to these, so that a reason computed from a
// request cannot grow the set of labels. It walks every module: call it
// once per revision, not per request. The zero Snapshot has none.
func (s Snapshot) Literals() map[string]bool {
	out := map[string]bool{}
	if s.p == nil {
		return out
	}
	for _, m := range s.p.compiler.Modules {
		ast.WalkTerms(m, func(t *ast.Term) bool {
			if str, ok := t.Value.(ast.String); ok && len(str) <= maxLiteral {
				out[string(str)] = true
			}
			return false
		})
	}
	return out
}
