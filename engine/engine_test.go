package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/loader"
)

// widgetPolicy allows a request whose input.wid names a widget with
// anonymous sessions in data.registry.widgets.
const widgetPolicy = `package guestgate.authz

default decision := {"allowed": false, "http_status": 403, "reason": "widget_disabled"}

decision := {"allowed": true, "reason": "widget_enabled"} if {
	data.registry.widgets[input.wid].anonymous_sessions
}
`

const widgetsJSON = `{"widgets": {
	"W-DEMO": {"anonymous_sessions": true, "channels": ["support-1"]},
	"W-OFF": {"anonymous_sessions": false, "channels": []}
}}`

// taggedPolicy decides {"allowed": true, "reason": tag} for every input, so a
// test can tell which version of the policy is serving.
func taggedPolicy(tag string) string {
	return fmt.Sprintf("package guestgate.authz\n\ndecision := {\"allowed\": true, \"reason\": %q}\n", tag)
}

// writeFiles writes files (slash paths relative to dir), creating folders.
// Each file is written to a temporary dot file and renamed into place, so a
// watcher never reads it half written.
func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		tmp := filepath.Join(filepath.Dir(p), ".tmp-"+filepath.Base(p))
		if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, p); err != nil {
			t.Fatal(err)
		}
	}
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// reloadRecorder collects OnReload events.
type reloadRecorder struct {
	mu     sync.Mutex
	events []ReloadEvent
}

func (r *reloadRecorder) record(ev ReloadEvent) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, ev)
}

func (r *reloadRecorder) last() ReloadEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.events) == 0 {
		return ReloadEvent{}
	}
	return r.events[len(r.events)-1]
}

func (r *reloadRecorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.events)
}

func newTestEngine(t *testing.T, dir string, rec *reloadRecorder) *Engine {
	t.Helper()
	opts := Options{Dir: dir, Logger: quietLogger()}
	if rec != nil {
		opts.OnReload = rec.record
	}
	e, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return e
}

func input(t *testing.T, doc string) ast.Value {
	t.Helper()
	term, err := ast.ParseTerm(doc)
	if err != nil {
		t.Fatal(err)
	}
	return term.Value
}

// decisionField evaluates the decision for in and returns one of its fields
// as Go JSON ("" when the decision is undefined).
func decisionField(t *testing.T, e *Engine, in, field string) string {
	t.Helper()
	res, err := e.Eval(context.Background(), input(t, in))
	if err != nil {
		t.Fatalf("Eval: %v", err)
	}
	if !res.Defined {
		return ""
	}
	obj, ok := res.Value.(ast.Object)
	if !ok {
		t.Fatalf("decision is %v, not an object", res.Value)
	}
	v := obj.Get(ast.StringTerm(field))
	if v == nil {
		return ""
	}
	if s, ok := v.Value.(ast.String); ok {
		return string(s)
	}
	return v.String()
}

func reason(t *testing.T, e *Engine) string { return decisionField(t, e, `{}`, "reason") }

func TestPolicyDecidesAllowAndDenyFromData(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"authz.rego": widgetPolicy, "registry/widgets.json": widgetsJSON})
	e := newTestEngine(t, dir, nil)

	for _, tc := range []struct {
		name, input, allowed, reason string
	}{
		{"enabled widget is allowed", `{"wid": "W-DEMO"}`, "true", "widget_enabled"},
		{"disabled widget is denied", `{"wid": "W-OFF"}`, "false", "widget_disabled"},
		{"unknown widget is denied", `{"wid": "W-NONE"}`, "false", "widget_disabled"},
		{"missing widget is denied", `{}`, "false", "widget_disabled"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := decisionField(t, e, tc.input, "allowed"); got != tc.allowed {
				t.Errorf("allowed = %s, want %s", got, tc.allowed)
			}
			if got := decisionField(t, e, tc.input, "reason"); got != tc.reason {
				t.Errorf("reason = %q, want %q", got, tc.reason)
			}
		})
	}
	res, err := e.Eval(context.Background(), input(t, `{"wid": "W-DEMO"}`))
	if err != nil {
		t.Fatal(err)
	}
	if res.Revision == "" || res.Revision != e.Revision() {
		t.Errorf("Result.Revision = %q, want the engine's %q", res.Revision, e.Revision())
	}
	st := e.Status()
	if !st.Ready || st.Revision != e.Revision() || st.Files != 2 || st.LastError != "" || st.LoadedAt.IsZero() {
		t.Errorf("Status = %+v", st)
	}
}

func TestUndefinedDecisionIsNotDefined(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"authz.rego": `package guestgate.authz

decision := {"allowed": true} if input.user == "alice"
`})
	e := newTestEngine(t, dir, nil)

	for _, in := range []string{`{"user": "bob"}`, `{}`} {
		res, err := e.Eval(context.Background(), input(t, in))
		if err != nil {
			t.Fatalf("Eval(%s): %v", in, err)
		}
		if res.Defined || res.Value != nil {
			t.Errorf("Eval(%s) = %v, want undefined", in, res)
		}
	}
	res, err := e.Eval(context.Background(), nil)
	if err != nil || res.Defined {
		t.Errorf("Eval(nil input) = %v, %v; want undefined", res, err)
	}
	res, err = e.Eval(context.Background(), input(t, `{"user": "alice"}`))
	if err != nil || !res.Defined {
		t.Errorf("Eval(alice) = %v, %v; want defined", res, err)
	}
}

func TestBooleanDecisionIsReturnedAsIs(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"authz.rego": "package guestgate.authz\n\ndefault decision := false\n"})
	e := newTestEngine(t, dir, nil)
	res, err := e.Eval(context.Background(), input(t, `{}`))
	if err != nil {
		t.Fatal(err)
	}
	if !res.Defined || res.Value.Compare(ast.Boolean(false)) != 0 {
		t.Errorf("Eval = %v, want defined false", res)
	}
}

func TestEvalWithDoneContextFails(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"authz.rego": taggedPolicy("v1")})
	e := newTestEngine(t, dir, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := e.Eval(ctx, input(t, `{}`)); !errors.Is(err, context.Canceled) {
		t.Errorf("Eval with cancelled context: err = %v, want context.Canceled", err)
	}
}

func TestEvalConflictIsAnError(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"authz.rego": `package guestgate.authz

decision := {"allowed": true} if input.a
decision := {"allowed": false} if input.b
`})
	e := newTestEngine(t, dir, nil)
	if _, err := e.Eval(context.Background(), input(t, `{"a": true, "b": true}`)); err == nil {
		t.Error("Eval with two conflicting decisions succeeded, want an error")
	}
}

func TestDataFilesLoadAtTheirFolderPathAsOPATestDoes(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"authz.rego":            widgetPolicy,
		"registry/widgets.json": widgetsJSON,
		"registry/channels.yaml": `channels:
  public-lobby:
    public: true
  support-1:
    public: false
`,
		"chat/commands.yml": "anonymous_commands: [GetTokenCommand, MarkReadCommand]\n",
		"limits.json":       `{"limits": {"body_bytes": 65536}}`,
		"deep/a/b/c.json":   `{"d": 1}`,
		"notes.txt":         "not data",
	})
	e := newTestEngine(t, dir, nil)

	for _, tc := range []struct {
		path []string
		want any
	}{
		{[]string{"registry", "widgets", "W-DEMO", "anonymous_sessions"}, true},
		{[]string{"registry", "channels", "public-lobby", "public"}, true},
		{[]string{"registry", "channels", "support-1", "public"}, false},
		{[]string{"chat", "anonymous_commands"}, []any{"GetTokenCommand", "MarkReadCommand"}},
		{[]string{"deep", "a", "b", "d"}, json.Number("1")},
		{[]string{"limits", "body_bytes"}, json.Number("65536")},
	} {
		got, ok := e.Data(tc.path...)
		if !ok || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Data(%v) = %#v, %v; want %#v", tc.path, got, ok, tc.want)
		}
	}
	for _, path := range [][]string{{"registry", "widgets.json"}, {"notes"}, {"registry", "widgets", "W-NONE"}, {"registry", "widgets", "W-DEMO", "channels", "0"}} {
		if got, ok := e.Data(path...); ok {
			t.Errorf("Data(%v) = %#v, want absent", path, got)
		}
	}

	// The whole document is what `opa test <dir>` loads (with dot names
	// ignored, as guestgate ignores them).
	want, err := loader.NewFileLoader().Filtered([]string{dir}, func(_ string, info fs.FileInfo, depth int) bool {
		return depth > 0 && strings.HasPrefix(info.Name(), ".")
	})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := e.Data(); !reflect.DeepEqual(got, want.Documents) {
		t.Errorf("Data() = %v\nopa test loads %v", got, want.Documents)
	}
	if got := decisionField(t, e, `{"wid": "W-DEMO"}`, "allowed"); got != "true" {
		t.Errorf("policy reading data.registry.widgets: allowed = %s, want true", got)
	}
}

func TestCommittedChatFixtureMatchesOPATest(t *testing.T) {
	e := newTestEngine(t, "testdata/chat", nil)
	want, err := loader.NewFileLoader().All([]string{"testdata/chat"})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := e.Data(); !reflect.DeepEqual(got, want.Documents) {
		t.Errorf("Data() = %v\nopa test loads %v", got, want.Documents)
	}
	// authz_test.rego is there for `opa test` and not served.
	if got := e.Status().Files; got != 4 {
		t.Errorf("Status.Files = %d, want 4 (authz.rego and three data files)", got)
	}
}

func TestDotFilesAndFoldersAreSkipped(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"authz.rego":            taggedPolicy("v1"),
		".authz.rego.swp":       "binary junk",
		".hidden.rego":          "package broken {{{",
		".git/config.json":      `{"secret": true}`,
		".cache/x.rego":         "package broken {{{",
		"registry/.draft.json":  `{"widgets": {"W-DRAFT": {}}}`,
		"registry/widgets.json": widgetsJSON,
	})
	e := newTestEngine(t, dir, nil)
	if got := reason(t, e); got != "v1" {
		t.Errorf("reason = %q, want v1", got)
	}
	for _, path := range [][]string{{".git"}, {"git"}, {"secret"}, {"registry", "widgets", "W-DRAFT"}} {
		if got, ok := e.Data(path...); ok {
			t.Errorf("Data(%v) = %v, want absent", path, got)
		}
	}
	if got := e.Status().Files; got != 2 {
		t.Errorf("Status.Files = %d, want 2", got)
	}
}

func TestRegoTestFilesAreNotServed(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"authz.rego": taggedPolicy("v1"),
		// Served, this would redeclare the decision and fail to compile.
		"authz_test.rego": "package guestgate.authz\n\ndecision := {\"reason\": \"test\"}\n\ntest_x if true\n",
	})
	e := newTestEngine(t, dir, nil)
	if got := reason(t, e); got != "v1" {
		t.Errorf("reason = %q, want v1", got)
	}
}

func TestRewrittenPolicyDecidesAnew(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"authz.rego": taggedPolicy("v1")})
	rec := &reloadRecorder{}
	e := newTestEngine(t, dir, rec)
	first := e.Revision()

	writeFiles(t, dir, map[string]string{"authz.rego": taggedPolicy("v2")})
	if err := e.Reload(); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if got := reason(t, e); got != "v2" {
		t.Errorf("reason = %q, want v2", got)
	}
	if e.Revision() == first {
		t.Error("revision did not change with the content")
	}
	if ev := rec.last(); ev.Err != nil || !ev.Changed || ev.Revision != e.Revision() || ev.Files != 1 {
		t.Errorf("OnReload got %+v", ev)
	}
}

func TestIdenticalRewriteKeepsRevision(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{"authz.rego": widgetPolicy, "registry/widgets.json": widgetsJSON}
	writeFiles(t, dir, files)
	rec := &reloadRecorder{}
	e := newTestEngine(t, dir, rec)
	first := e.Revision()
	loadedAt := e.Status().LoadedAt

	writeFiles(t, dir, files)
	if err := e.Reload(); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if e.Revision() != first {
		t.Errorf("revision %s became %s on identical content", first, e.Revision())
	}
	if got := e.Status().LoadedAt; !got.Equal(loadedAt) {
		t.Errorf("LoadedAt moved from %v to %v: identical content was swapped in again", loadedAt, got)
	}
	if ev := rec.last(); ev.Err != nil || ev.Changed || ev.Revision != first {
		t.Errorf("OnReload got %+v, want unchanged success", ev)
	}

	// The same content in another engine has the same revision: it is a
	// content hash, not a load counter.
	if other := newTestEngine(t, dir, nil); other.Revision() != first {
		t.Errorf("another engine on the same files has revision %s, want %s", other.Revision(), first)
	}
	// Moving content between files is a different revision.
	dir2 := t.TempDir()
	writeFiles(t, dir2, map[string]string{"authz.rego": widgetPolicy, "registry/other.json": widgetsJSON})
	if other := newTestEngine(t, dir2, nil); other.Revision() == first {
		t.Error("renaming a data file kept the revision")
	}
}

func TestRefusedReloadKeepsServingThePreviousPolicy(t *testing.T) {
	for _, tc := range []struct {
		name    string
		change  func(t *testing.T, dir string)
		is      error  // sentinel the error wraps, if any
		mention string // text the error must contain
	}{
		{
			name: "parse error names file and line",
			change: func(t *testing.T, dir string) {
				writeFiles(t, dir, map[string]string{"authz.rego": "package guestgate.authz\n\ndecision := {\n"})
			},
			mention: "authz.rego:4: rego_parse_error",
		},
		{
			name: "Rego v0 syntax",
			change: func(t *testing.T, dir string) {
				writeFiles(t, dir, map[string]string{"authz.rego": "package guestgate.authz\n\ndecision = true { input.x }\n"})
			},
			mention: "authz.rego:3: rego_parse_error",
		},
		{
			name: "type error in a subfolder names file and line",
			change: func(t *testing.T, dir string) {
				writeFiles(t, dir, map[string]string{"lib/helpers.rego": "package guestgate.lib\n\nx := 1 + \"a\"\n"})
			},
			mention: "lib/helpers.rego:3: rego_type_error",
		},
		{
			name: "strict-mode error",
			change: func(t *testing.T, dir string) {
				writeFiles(t, dir, map[string]string{"authz.rego": "package guestgate.authz\n\ndecision := {\"allowed\": true} if {\n\tunused := 1\n\ttrue\n}\n"})
			},
			mention: "authz.rego:4: rego_compile_error: assigned var unused unused",
		},
		{
			name: "emptied directory",
			change: func(t *testing.T, dir string) {
				removeAll(t, dir)
			},
			is: ErrNoPolicy,
		},
		{
			name: "only data left",
			change: func(t *testing.T, dir string) {
				if err := os.Remove(filepath.Join(dir, "authz.rego")); err != nil {
					t.Fatal(err)
				}
			},
			is: ErrNoPolicy,
		},
		{
			name: "decision rule lost",
			change: func(t *testing.T, dir string) {
				writeFiles(t, dir, map[string]string{"authz.rego": "package guestgate.authz\n\nverdict := {\"allowed\": true}\n"})
			},
			is:      ErrNoDecision,
			mention: "data.guestgate.authz.decision",
		},
		{
			name: "package renamed",
			change: func(t *testing.T, dir string) {
				writeFiles(t, dir, map[string]string{"authz.rego": "package guestgate.authz2\n\ndecision := {\"allowed\": true}\n"})
			},
			is: ErrNoDecision,
		},
		{
			name: "malformed JSON data",
			change: func(t *testing.T, dir string) {
				writeFiles(t, dir, map[string]string{"registry/widgets.json": `{"widgets": `})
			},
			mention: "registry/widgets.json",
		},
		{
			name: "data files in one folder disagree",
			change: func(t *testing.T, dir string) {
				writeFiles(t, dir, map[string]string{"registry/more.json": `{"widgets": {"W-DEMO": 1}}`})
			},
			mention: `conflicting values at data.registry.widgets["W-DEMO"]`,
		},
		{
			name: "rule and data define the same path",
			change: func(t *testing.T, dir string) {
				writeFiles(t, dir, map[string]string{"registry.rego": "package registry\n\nwidgets := {}\n"})
			},
			mention: "registry.rego:3: rego_compile_error: conflicting rule",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFiles(t, dir, map[string]string{"authz.rego": taggedPolicy("good"), "registry/widgets.json": widgetsJSON})
			rec := &reloadRecorder{}
			e := newTestEngine(t, dir, rec)
			good := e.Revision()

			tc.change(t, dir)
			err := e.Reload()
			if err == nil {
				t.Fatal("Reload succeeded, want a refusal")
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("Reload error %q does not wrap %v", err, tc.is)
			}
			if !strings.Contains(err.Error(), tc.mention) {
				t.Errorf("Reload error %q does not mention %q", err, tc.mention)
			}
			if got := reason(t, e); got != "good" {
				t.Errorf("after refusal reason = %q, want the previous policy's", got)
			}
			if e.Revision() != good {
				t.Errorf("revision changed to %s on refusal", e.Revision())
			}
			if _, ok := e.Data("registry", "widgets", "W-DEMO"); !ok {
				t.Error("Data lost the previous revision's registry")
			}
			st := e.Status()
			if st.LastError != err.Error() || st.LastErrorAt.IsZero() || !st.Ready || st.Revision != good {
				t.Errorf("Status = %+v, want the refusal and the previous revision", st)
			}
			if ev := rec.last(); ev.Err == nil || ev.Err.Error() != err.Error() || ev.Revision != good || ev.Changed {
				t.Errorf("OnReload got %+v, want the refusal", ev)
			}

			// Repairing the directory loads again and clears the error.
			removeAll(t, dir)
			writeFiles(t, dir, map[string]string{"authz.rego": taggedPolicy("repaired"), "registry/widgets.json": widgetsJSON})
			if err := e.Reload(); err != nil {
				t.Fatalf("Reload after repair: %v", err)
			}
			if got := reason(t, e); got != "repaired" {
				t.Errorf("after repair reason = %q", got)
			}
			if st := e.Status(); st.LastError != "" || !st.LastErrorAt.IsZero() {
				t.Errorf("after repair Status = %+v, want no error", st)
			}
		})
	}
}

func TestRefusedContentIsReportedOnEveryAttempt(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"authz.rego": taggedPolicy("good")})
	rec := &reloadRecorder{}
	e := newTestEngine(t, dir, rec)
	writeFiles(t, dir, map[string]string{"authz.rego": "package guestgate.authz\n\ndecision := {\n"})
	first := e.Reload()
	second := e.Reload()
	if first == nil || second == nil || first.Error() != second.Error() {
		t.Errorf("Reload twice on the same broken content = %v, %v; want the same refusal", first, second)
	}
	if got := rec.count(); got != 3 {
		t.Errorf("OnReload called %d times, want 3 (New and two reloads)", got)
	}
}

func removeAll(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, ent := range entries {
		if err := os.RemoveAll(filepath.Join(dir, ent.Name())); err != nil {
			t.Fatal(err)
		}
	}
}

func TestNewFailsOnABrokenDirectory(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files map[string]string
		dir   func(t *testing.T) string // overrides files
		query string
		is    error
	}{
		{name: "parse error", files: map[string]string{"authz.rego": "package guestgate.authz\n\ndecision := {\n"}},
		{name: "empty directory", files: map[string]string{}, is: ErrNoPolicy},
		{name: "only data", files: map[string]string{"registry/widgets.json": widgetsJSON}, is: ErrNoPolicy},
		{name: "only hidden policy", files: map[string]string{".authz.rego": taggedPolicy("v1")}, is: ErrNoPolicy},
		{name: "only tests", files: map[string]string{"authz_test.rego": "package guestgate.authz_test\n\ntest_x if true\n"}, is: ErrNoPolicy},
		{name: "no decision rule", files: map[string]string{"authz.rego": "package guestgate.authz\n\nallow := true\n"}, is: ErrNoDecision},
		{name: "custom query without its rule", files: map[string]string{"authz.rego": taggedPolicy("v1")}, query: "data.other.decision", is: ErrNoDecision},
		{name: "query not a data reference", files: map[string]string{"authz.rego": taggedPolicy("v1")}, query: "input.x"},
		{name: "query not a reference", files: map[string]string{"authz.rego": taggedPolicy("v1")}, query: "1 + 1"},
		{name: "missing directory", dir: func(t *testing.T) string { return filepath.Join(t.TempDir(), "nope") }, is: fs.ErrNotExist},
		{name: "a file, not a directory", dir: func(t *testing.T) string {
			p := filepath.Join(t.TempDir(), "authz.rego")
			writeFiles(t, filepath.Dir(p), map[string]string{"authz.rego": taggedPolicy("v1")})
			return p
		}},
		{name: "no directory given", dir: func(*testing.T) string { return "" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var dir string
			if tc.dir != nil {
				dir = tc.dir(t)
			} else {
				dir = t.TempDir()
				writeFiles(t, dir, tc.files)
			}
			rec := &reloadRecorder{}
			e, err := New(Options{Dir: dir, Query: tc.query, Logger: quietLogger(), OnReload: rec.record})
			if err == nil {
				t.Fatalf("New = %v, want an error", e)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("New error %q does not wrap %v", err, tc.is)
			}
		})
	}
}

func TestCustomQueryIsEvaluated(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"authz.rego":  "package envoy.authz\n\nallow if input.ok\n",
		"limits.json": `{"limits": {"max": 3}}`,
	})
	e, err := New(Options{Dir: dir, Query: "data.envoy.authz.allow", Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	res, err := e.Eval(context.Background(), input(t, `{"ok": true}`))
	if err != nil || !res.Defined || res.Value.Compare(ast.Boolean(true)) != 0 {
		t.Errorf("Eval = %v, %v; want true", res, err)
	}
	// A query answered by data alone is a decision too.
	e, err = New(Options{Dir: dir, Query: "data.limits.max", Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	res, err = e.Eval(context.Background(), nil)
	if err != nil || !res.Defined || res.Value.Compare(ast.Number("3")) != 0 {
		t.Errorf("Eval = %v, %v; want 3", res, err)
	}
}

func TestNonStrictAcceptsWhatStrictRefuses(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"authz.rego": "package guestgate.authz\n\ndecision := {\"allowed\": true} if {\n\tunused := 1\n\ttrue\n}\n"})
	if _, err := New(Options{Dir: dir, Logger: quietLogger()}); err == nil {
		t.Error("strict New accepted an unused variable")
	}
	if _, err := New(Options{Dir: dir, NonStrict: true, Logger: quietLogger()}); err != nil {
		t.Errorf("NonStrict New: %v", err)
	}
}

func TestDataReadsTheCurrentRevision(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"authz.rego": widgetPolicy, "registry/widgets.json": widgetsJSON})
	e := newTestEngine(t, dir, nil)

	got, ok := e.Data("registry", "widgets", "W-DEMO")
	want := map[string]any{"anonymous_sessions": true, "channels": []any{"support-1"}}
	if !ok || !reflect.DeepEqual(got, want) {
		t.Fatalf("Data(W-DEMO) = %#v, %v; want %#v", got, ok, want)
	}
	// The result is a copy: changing it changes nothing in the engine.
	got.(map[string]any)["anonymous_sessions"] = false
	got.(map[string]any)["channels"].([]any)[0] = "changed"
	if again, _ := e.Data("registry", "widgets", "W-DEMO"); !reflect.DeepEqual(again, want) {
		t.Errorf("Data after the caller changed its copy = %#v", again)
	}

	writeFiles(t, dir, map[string]string{"registry/widgets.json": `{"widgets": {"W-DEMO": {"anonymous_sessions": false, "channels": []}}}`})
	if err := e.Reload(); err != nil {
		t.Fatal(err)
	}
	if got, _ := e.Data("registry", "widgets", "W-DEMO", "anonymous_sessions"); got != false {
		t.Errorf("after reload Data(W-DEMO.anonymous_sessions) = %v, want false", got)
	}
	if got := decisionField(t, e, `{"wid": "W-DEMO"}`, "allowed"); got != "false" {
		t.Errorf("after reload allowed = %s, want false", got)
	}
}

func TestEvalDuringReloadsAlwaysDecides(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"authz.rego": taggedPolicy("v0")})
	e := newTestEngine(t, dir, nil)
	in := input(t, `{}`)

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() {
			for ctx.Err() == nil {
				res, err := e.Eval(context.Background(), in)
				if err != nil || !res.Defined {
					errs <- fmt.Errorf("Eval = %v, %v", res, err)
					return
				}
			}
		})
	}
	for i := range 20 {
		content := taggedPolicy(fmt.Sprintf("v%d", i))
		if i%5 == 4 {
			content = "package guestgate.authz\n\ndecision := {\n" // refused
		}
		writeFiles(t, dir, map[string]string{"authz.rego": content})
		_ = e.Reload()
	}
	cancel()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := reason(t, e); got != "v18" {
		t.Errorf("reason = %q, want v18 (the last good one)", got)
	}
}
