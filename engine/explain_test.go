package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
)

// chatInput is an input of the shipped policy: an XBS anonymous kite
// session of widget wid bound to channel bound, sending command in channel.
func chatInput(wid, bound, channel, command string) ast.Value {
	return ast.MustParseTerm(fmt.Sprintf(`{"attributes": {"request": {"http": {"method": "POST"}}},
		"parsed_path": ["conversations", "channels", %q, %q], "token_error": null,
		"token": {"kind": "xbs_anonymous", "issuer": "iss", "subject": "visitor-1",
		          "claims": {"custom:entry": "kite", "custom:wid": %q, "custom:channel_id": %q}}}`,
		channel, command, wid, bound)).Value
}

// lineOf is the 1-based line of policies/file that holds text: where a
// step must point, found in the source rather than written into the test.
func lineOf(t *testing.T, file, text string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "policies", file))
	if err != nil {
		t.Fatal(err)
	}
	for i, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, text) {
			return i + 1
		}
	}
	t.Fatalf("%s has no line holding %q", file, text)
	return 0
}

func TestExplainNamesTheRuleThatDeniedAndTheDataItRead(t *testing.T) {
	e := newCacheEngine(t, Options{Dir: "../policies"})
	cases := []struct {
		name   string
		input  ast.Value
		reason string
		// the step that decided: the line of the else branch naming the
		// reason, and its condition
		decidedAt, decidedBy string
		// a step below it: the rule, whether it had a value, and the data it read
		rule, outcome, data string
		dataDefined         bool
	}{
		{
			name: "a command the anonymous list lacks", input: chatInput("W-DEMO", "kite-1", "kite-1", "DeleteChannelCommand"),
			reason: "command_not_allowed", decidedAt: `else := "command_not_allowed" if {`, decidedBy: "not command_listed",
			rule: "data.guestgate.anonymous.command_listed", outcome: OutcomeUndefined, data: "data.chat.anonymous_commands", dataDefined: true,
		},
		{
			name: "a widget with anonymous sessions off", input: chatInput("W-OFF", "kite-1", "kite-1", "MarkReadCommand"),
			reason: "widget_disabled", decidedAt: `else := "widget_disabled" if {`, decidedBy: "not widget.anonymous_sessions == true",
			rule: "data.guestgate.anonymous.widget", outcome: OutcomeValue, data: `data.registry.widgets["W-OFF"]`, dataDefined: true,
		},
		{
			name: "a widget the registry does not list", input: chatInput("W-GONE", "kite-1", "kite-1", "MarkReadCommand"),
			reason: "widget_unknown", decidedAt: `kite_reason := "widget_unknown" if {`, decidedBy: "not widget",
			rule: "data.guestgate.anonymous.widget", outcome: OutcomeUndefined, data: `data.registry.widgets["W-GONE"]`, dataDefined: false,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res, x, err := e.Current().Explain(context.Background(), c.input)
			if err != nil {
				t.Fatal(err)
			}
			if got := res.Value.(ast.Object).Get(ast.StringTerm("reason")); got == nil || got.Value.Compare(ast.String(c.reason)) != 0 {
				t.Fatalf("reason %v, want %s", got, c.reason)
			}
			if len(x.Steps) == 0 || x.Steps[0].Rule != DefaultQuery || x.Steps[0].Depth != 0 || x.Steps[0].File != "authz.rego" {
				t.Fatalf("the chain does not start at the decision rule:\n%s", x.Text())
			}
			decided := findStep(x, "data.guestgate.anonymous.", c.decidedBy)
			if decided == nil || decided.File != "anonymous.rego" || decided.Line != lineOf(t, "anonymous.rego", c.decidedAt) || decided.Outcome != OutcomeValue {
				t.Fatalf("no step at anonymous.rego:%d decided by %q:\n%s", lineOf(t, "anonymous.rego", c.decidedAt), c.decidedBy, x.Text())
			}
			if decided.Value != c.reason {
				t.Fatalf("the deciding step gave %v, want %q", decided.Value, c.reason)
			}
			below := findStep(x, c.rule, "")
			if below == nil || below.Outcome != c.outcome || below.Depth <= decided.Depth {
				t.Fatalf("no step %s (%s) below the deciding one:\n%s", c.rule, c.outcome, x.Text())
			}
			var read *DataRead
			for i := range below.Data {
				if below.Data[i].Ref == c.data {
					read = &below.Data[i]
				}
			}
			if read == nil || read.Defined != c.dataDefined {
				t.Fatalf("step %s did not read %s (defined %v):\n%s", c.rule, c.data, c.dataDefined, x.Text())
			}
			if text := x.Text(); !strings.Contains(text, fmt.Sprintf("anonymous.rego:%d", decided.Line)) || !strings.Contains(text, c.data) {
				t.Fatalf("the text form leaves out the deciding line or the data:\n%s", text)
			}
		})
	}
}

// findStep is the first step of rule (a prefix) whose Expr is expr ("": any).
func findStep(x *Explanation, rule, expr string) *Step {
	for i, st := range x.Steps {
		if strings.HasPrefix(st.Rule, rule) && (expr == "" || st.Expr == expr) {
			return &x.Steps[i]
		}
	}
	return nil
}

// TestExplainAnswersAsEval: the decision Explain explains is Eval's, for
// every kind of traffic the shipped policy sees.
func TestExplainAnswersAsEval(t *testing.T) {
	e := newCacheEngine(t, Options{Dir: "../policies", DecisionCacheSize: -1})
	inputs := shippedPolicyInputs()
	for i := 0; i < len(inputs); i += 37 { // a spread of them: each explanation traces a whole evaluation
		want, err := e.Eval(context.Background(), inputs[i])
		if err != nil {
			t.Fatal(err)
		}
		got, x, err := e.Current().Explain(context.Background(), inputs[i])
		if err != nil {
			t.Fatal(err)
		}
		if got.Defined != want.Defined || got.Value.Compare(want.Value) != 0 || x.Defined != want.Defined {
			t.Fatalf("input %v: Explain decided %v, Eval %v", inputs[i], got.Value, want.Value)
		}
		wantJSON, _ := ast.JSON(want.Value)
		if a, b := mustJSON(t, x.Result), mustJSON(t, wantJSON); a != b {
			t.Fatalf("explanation result %s, Eval %s", a, b)
		}
		if len(x.Steps) == 0 || x.Steps[0].Outcome != OutcomeValue {
			t.Fatalf("input %v: no deciding step:\n%s", inputs[i], x.Text())
		}
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestExplainOfSmallPolicies(t *testing.T) {
	big := `{"table": {`
	for i := range 200 {
		if i > 0 {
			big += ", "
		}
		big += fmt.Sprintf(`"k%03d": "%s"`, i, strings.Repeat("v", 20))
	}
	big += "}}"
	cases := []struct {
		name, policy, data, input string
		defined                   bool
		check                     func(t *testing.T, x *Explanation)
	}{
		{
			name:   "undefined decision: a body that ran and failed",
			policy: "package guestgate.authz\n\ndecision if {\n\tv := input.x + 1\n\tv > 5\n}\n",
			input:  `{"x": 2}`,
			check: func(t *testing.T, x *Explanation) {
				if len(x.Steps) != 1 || x.Steps[0].Outcome != OutcomeUndefined || x.Steps[0].Expr != "v > 5" || x.Steps[0].Evaluated != "gt(3, 5)" {
					t.Fatalf("want the failed body with its expression and values:\n%s", x.Text())
				}
			},
		},
		{
			name:   "undefined decision: every body ruled out",
			policy: "package guestgate.authz\n\ndecision if input.x == 1\n\ndecision if input.y == 2\n",
			input:  `{"x": 2, "y": 3}`,
			check: func(t *testing.T, x *Explanation) {
				if len(x.Steps) != 2 || x.Steps[0].Outcome != OutcomeUndefined || x.Steps[0].Expr != "input.x == 1" || x.Steps[1].Expr != "input.y == 2" {
					t.Fatalf("want both failed bodies with their expressions:\n%s", x.Text())
				}
				// OPA's rule index rules both out without running them.
				if !x.Steps[0].NotEvaluated || x.Steps[0].Line != 3 || x.Steps[1].Line != 5 {
					t.Fatalf("want the bodies at lines 3 and 5, not evaluated: %+v", x.Steps)
				}
			},
		},
		{
			name:    "a function's value and a large data document",
			policy:  "package guestgate.authz\n\ndecision := deny(input.k) if not data.cfg.table[input.k]\n\ndeny(k) := {\"allowed\": false, \"reason\": concat(\"\", [\"no_\", k])}\n\nlisted := data.cfg.table\n",
			data:    big,
			input:   `{"k": "missing"}`,
			defined: true,
			check: func(t *testing.T, x *Explanation) {
				st := findStep(x, "data.guestgate.authz.deny", "")
				if st == nil || st.Outcome != OutcomeValue || st.Depth != 1 {
					t.Fatalf("the function's step is missing:\n%s", x.Text())
				}
				root := x.Steps[0]
				if len(root.Data) != 1 || root.Data[0].Ref != `data.cfg.table.missing` || root.Data[0].Defined {
					t.Fatalf("want the undefined table entry read: %+v", root.Data)
				}
			},
		},
		{
			name:    "a data document too large to show",
			policy:  "package guestgate.authz\n\ndecision := count(data.cfg.table)\n",
			data:    big,
			input:   `{}`,
			defined: true,
			check: func(t *testing.T, x *Explanation) {
				root := x.Steps[0]
				if len(root.Data) != 1 || !root.Data[0].Defined || !root.Data[0].Truncated || root.Data[0].Value != nil {
					t.Fatalf("want the table read but not shown: %+v", root.Data)
				}
				if !strings.Contains(x.Text(), "too large to show") {
					t.Fatalf("text:\n%s", x.Text())
				}
			},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			files := map[string]string{"authz.rego": c.policy}
			if c.data != "" {
				files["cfg/data.json"] = c.data
			}
			writeFiles(t, dir, files)
			e := newCacheEngine(t, Options{Dir: dir, NonStrict: true})
			res, x, err := e.Current().Explain(context.Background(), ast.MustParseTerm(c.input).Value)
			if err != nil {
				t.Fatal(err)
			}
			if res.Defined != c.defined || x.Defined != c.defined {
				t.Fatalf("defined %v, want %v", res.Defined, c.defined)
			}
			c.check(t, x)
		})
	}
}

func TestExplainWithoutAPolicyIsAnError(t *testing.T) {
	if _, _, err := (Snapshot{}).Explain(context.Background(), ast.NewObject()); err == nil {
		t.Fatal("the zero Snapshot explained something")
	}
}

func TestLiteralsHoldEveryReasonOfTheShippedPolicyAndNoRequestData(t *testing.T) {
	lits := newCacheEngine(t, Options{Dir: "../policies"}).Current().Literals()
	for _, reason := range []string{"allowed", "invalid_token", "missing_token", "command_not_allowed", "widget_disabled", "channel_not_bound", "path_not_canonical"} {
		if !lits[reason] {
			t.Errorf("%q is not among the literals", reason)
		}
	}
	if lits["W-DEMO"] || lits["DeleteChannelCommand"] {
		t.Error("data or request values are among the policy's literals")
	}
	if len((Snapshot{}).Literals()) != 0 {
		t.Error("the zero Snapshot has literals")
	}
}
