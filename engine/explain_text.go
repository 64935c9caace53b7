package engine

import (
	"encoding/json"
	"fmt"
	"strings"
)

// Text is the explanation for a terminal: the decision, then a line per
// step (file:line, the rule and its value, or that it was undefined),
// indented by depth, with the conditions that held or the expression that
// failed, and the data read, below it.
func (x *Explanation) Text() string {
	var b strings.Builder
	if x.Defined {
		fmt.Fprintf(&b, "%s = %s\n", x.Query, shownJSON(x.Result, false))
	} else {
		fmt.Fprintf(&b, "%s is undefined\n", x.Query)
	}
	for _, st := range x.Steps {
		indent := strings.Repeat("  ", st.Depth+1)
		where := fmt.Sprintf("%s:%d", st.File, st.Line)
		if st.Outcome == OutcomeValue {
			fmt.Fprintf(&b, "%s%s  %s = %s\n", indent, where, st.Rule, shownJSON(st.Value, false))
			if st.Expr != "" {
				fmt.Fprintf(&b, "%s    if %s\n", indent, oneLine(st.Expr))
			}
		} else {
			fmt.Fprintf(&b, "%s%s  %s is undefined\n", indent, where, st.Rule)
			if st.Expr != "" {
				fmt.Fprintf(&b, "%s    failed: %s\n", indent, oneLine(st.Expr))
			}
			if st.Evaluated != "" {
				fmt.Fprintf(&b, "%s    as:     %s\n", indent, st.Evaluated)
			}
			if st.NotEvaluated {
				fmt.Fprintf(&b, "%s    (not evaluated: OPA's rule index found from the input that it cannot hold)\n", indent)
			}
		}
		for _, d := range st.Data {
			switch {
			case !d.Defined:
				fmt.Fprintf(&b, "%s    read %s: undefined\n", indent, d.Ref)
			case d.Truncated:
				fmt.Fprintf(&b, "%s    read %s (too large to show)\n", indent, d.Ref)
			default:
				fmt.Fprintf(&b, "%s    read %s = %s\n", indent, d.Ref, shownJSON(d.Value, true))
			}
		}
	}
	if x.Truncated {
		fmt.Fprintf(&b, "  (more than %d steps: the rest is left out)\n", MaxExplainSteps)
	}
	return b.String()
}

// shownJSON is v as compact JSON, clipped for a line when short is set.
func shownJSON(v any, short bool) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	if short {
		return clip(string(b), 160)
	}
	return string(b)
}

// oneLine folds a multi-line source expression onto one line.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
