// Package engine loads guestgate's Rego policy directory, compiles each
// revision of it once, evaluates the decision query per request and
// hot-reloads the directory when its files change.
//
// The directory is read the way `opa test <dir>` reads it: every .rego file
// (Rego v1) is a module and every .json, .yaml and .yml file is data merged at
// its folder path relative to the directory (the file's own name is not part
// of the path, so registry/widgets.json holding {"widgets": {...}} becomes
// data.registry.widgets). Names starting with a dot are skipped (editor swap
// files, .git, and the ..data folders of a Kubernetes ConfigMap volume, whose
// keys are reached through the top-level symlinks instead); symlinks are
// followed. Rego tests (*_test.rego) are not served: they run under `opa test`.
// load.go reads and compiles the directory; watch.go reloads it when its
// files change and rereads it periodically for what notifications miss.
//
// A compiled policy, its data and its revision (the content hash of its
// files) are swapped in as one value behind an atomic pointer: Eval never
// waits on a reload, and a reload that fails (parse, type or strict-mode
// error, no .rego file left, no decision rule left) changes nothing but the
// error Status reports. Current pins the serving revision as a Snapshot, so
// that what a caller leaves out of an input by Snapshot.Reads and the
// evaluation of that input belong to the same revision.
//
// Each revision knows, by static analysis of its compiled modules and the
// decision query (analysis.go), which parts of the input it can read: a
// caller may leave the rest out. It keeps a decision cache keyed on the
// encoding of exactly those parts (decisionkey.go, decisioncache.go), off
// when its answer could differ for the same input. A decision the cache does
// not answer is evaluated by OPA, with the caches topdown keeps during an
// evaluation in cheaper forms (evalcache.go).
package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/guestgate/guestgate/engine/plan"
	"github.com/guestgate/guestgate/internal/memo"
	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/metrics"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage"
)

// DefaultQuery is the decision guestgate asks the policy for.
const DefaultQuery = "data.guestgate.authz.decision"

const (
	defaultDebounce     = 50 * time.Millisecond
	defaultPollInterval = 5 * time.Second
)

// Errors a refused load wraps; compile errors are OPA's own (ast.Errors,
// loader.Errors), which name the file and line.
var (
	// ErrNoPolicy means the directory holds no .rego file to serve, as when
	// it was emptied or a volume was unmounted.
	ErrNoPolicy = errors.New("engine: policy directory has no .rego file")
	// ErrNoDecision means the decision query refers to no rule and no data.
	ErrNoDecision = errors.New("engine: decision query refers to no rule and no data")
	// ErrTooLarge means a file or the whole revision is over its Limits.
	ErrTooLarge = errors.New("engine: policy too large")
)

// Options configure an Engine. Only Dir (or Bundle) is required.
type Options struct {
	// Dir is the policy directory. Required unless Bundle is set.
	Dir string
	// Bundle, if set, takes the policy from an OPA bundle server instead
	// of Dir (bundlesource.go).
	Bundle *BundleOptions
	// Limits bound a revision's data files and total size; zero values
	// are the defaults.
	Limits Limits
	// Query is the decision to evaluate, a reference into data. Empty means
	// DefaultQuery.
	Query string
	// Debounce is how long Watch waits for a burst of file events to settle
	// before reloading. Zero means 50ms.
	Debounce time.Duration
	// PollInterval is how often Watch rereads the directory regardless of
	// file notifications, to catch what they miss (a replaced directory,
	// folders reached through symlinks, lost events), and its only means
	// when notifications are unavailable. Rereading unchanged files is
	// cheap and reports nothing. Zero means 5s.
	PollInterval time.Duration
	// NonStrict accepts policies that compile but fail `opa check --strict`
	// (unused variables or imports, deprecated built-ins, shadowed input or
	// data). False, the default, refuses them like any other compile error.
	NonStrict bool
	// Logger receives load and watch events. Nil means slog.Default().
	Logger *slog.Logger
	// DecisionCacheSize bounds the decision cache (see decisioncache.go):
	// zero means DefaultDecisionCacheSize, negative turns it off. It is off
	// anyway for a policy whose answer could differ for the same input.
	DecisionCacheSize int
	// Evaluator is EvaluatorPlan (the default when empty) or EvaluatorOPA
	// (evaluator.go).
	Evaluator string
	// OnPlanFallback, if set, is called with the plan evaluator's error for
	// each evaluation it left to topdown. It must be cheap.
	OnPlanFallback func(err error)
	// OnReload, if set, is called after every load attempt, the first one in
	// New included, with its outcome. It runs on the loading goroutine and
	// must not call Reload.
	OnReload func(ev ReloadEvent)
}

// ReloadEvent describes one load attempt.
type ReloadEvent struct {
	// Revision is the revision serving after the attempt: the new one on
	// success, the previous one on refusal (empty if there was none).
	Revision string
	// Err is why the attempt was refused; nil on success.
	Err error
	// Duration is how long the attempt took.
	Duration time.Duration
	// Files is the number of files the serving revision was built from.
	Files int
	// Changed is true when the attempt swapped in a different revision.
	Changed bool
	// Evaluator is the serving revision's evaluator, as Status reports it.
	Evaluator string
}

// Result is the outcome of one evaluation.
type Result struct {
	// Value is the decision, nil when it is undefined.
	Value ast.Value
	// Defined is false when the policy produced no decision for the input.
	Defined bool
	// Revision is the policy revision that decided.
	Revision string

	// memo is shared by every answer of one cached decision; nil when the
	// decision is not cached.
	memo *memo.Slot
}

// Memo is where a caller keeps a form derived from this decision (the
// parsed answer), so that a repeated decision is converted once, not on
// every request: one slot shared by every answer of the same cached
// decision, or nil, which keeps nothing, when the decision is not cached.
// What is stored must be a pure function of the decision.
func (r Result) Memo() *memo.Slot { return r.memo }

// Cached reports whether this decision is in the decision cache (and so
// keeps a memo).
func (r Result) Cached() bool { return r.memo != nil }

// Status is the engine's state for readiness endpoints.
type Status struct {
	// Ready is true once a policy is loaded; an Engine from New always is.
	Ready bool `json:"ready"`
	// Revision is the content hash of the serving policy.
	Revision string `json:"revision"`
	// LoadedAt is when the serving revision was swapped in.
	LoadedAt time.Time `json:"loaded_at"`
	// LastError is why the most recent load attempt was refused, empty when
	// that attempt succeeded: while it is set the files on disk are not
	// what is serving.
	LastError string `json:"last_error,omitempty"`
	// LastErrorAt is when LastError happened.
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	// Files is the number of files the serving revision was built from.
	Files int `json:"files"`
	// DecisionCache says whether the serving revision caches decisions,
	// and if not, why.
	DecisionCache string `json:"decision_cache"`
	// Evaluator is the evaluator serving the revision: "plan", or "opa"
	// followed, when the plan evaluator was asked for, by why it was not.
	Evaluator string `json:"evaluator"`
	// Watching is true while Watch receives file notifications (false when
	// it is not running or has fallen back to polling).
	Watching bool `json:"watching"`
	// Bundle is the bundle's state when the policy comes from one.
	Bundle *BundleStatus `json:"bundle,omitempty"`
}

// Engine evaluates the decision of the policy directory's current revision.
// It is safe for concurrent use.
type Engine struct {
	dir          string
	query        ast.Ref
	debounce     time.Duration
	pollInterval time.Duration
	strict       bool
	cacheSize    int
	evaluator    string
	onFallback   func(error)
	log          *slog.Logger
	onReload     func(ReloadEvent)
	limits       Limits
	// read reads the source: the directory, or the bundle offered last
	// (bundle, nil for a directory).
	read   func() (*fileSet, error)
	bundle *bundleSource

	// current is the serving policy; Eval only ever loads it.
	current atomic.Pointer[policy]

	// reloadMu serialises loads so an older snapshot never replaces a newer
	// one; Eval never takes it.
	reloadMu sync.Mutex
	// lastSeen is the content hash of the previous attempt, and failed the
	// content and error of the last refused one, so an unchanged broken
	// directory is not recompiled on every poll or unrelated file event.
	// Guarded by reloadMu.
	lastSeen string
	failed   struct {
		revision string
		err      error
	}

	statusMu  sync.Mutex
	lastErr   string
	lastErrAt time.Time
	watching  bool
}

// noopMetrics is what evaluations report their timers to: nothing (OPA
// would otherwise allocate and time a metrics set per evaluation). It keeps
// no state, so every revision shares it.
var noopMetrics = metrics.NoOp()

// policy is one compiled revision: everything Eval and Data read, swapped as
// one value.
type policy struct {
	query rego.PreparedEvalQuery
	// plan evaluates the decision query when the plan evaluator serves the
	// revision, nil otherwise; evaluator is as Status reports it.
	plan      *plan.Plan
	evaluator string
	txn       storage.Transaction // read-only, open for the policy's lifetime
	data      map[string]any
	revision  string // what the revision is called (the hash, or a bundle's revision)
	hash      string // the content hash, which tells revisions apart
	files     int
	loadedAt  time.Time
	// reads is what the policy can read of its input; cache is its
	// decision cache, nil when off.
	reads inputReads
	cache *decisionCache
	// dataCache serves the data to evaluations (evalcache.go).
	dataCache dataCache
	// evalOpts are the evaluation options that are the same for every
	// evaluation of the revision, built once (each option is a closure,
	// and the base cache an interface value: allocations per evaluation
	// otherwise).
	evalOpts []rego.EvalOption
	// compiler is the revision's compiler (the prepared query holds it
	// anyway): Explain and Literals read its rules.
	compiler *ast.Compiler
}

// New loads the policy directory once and returns an Engine serving it. It
// fails when that first load fails: with no policy there is nothing to
// decide with, and the caller must refuse to start.
func New(opts Options) (*Engine, error) {
	if opts.Dir == "" && opts.Bundle == nil {
		return nil, errors.New("engine: Options.Dir or Options.Bundle is required")
	}
	q := opts.Query
	if q == "" {
		q = DefaultQuery
	}
	ref, err := ast.ParseRef(q)
	if err != nil {
		return nil, fmt.Errorf("engine: decision query %q: %w", q, err)
	}
	if !ref.HasPrefix(ast.DefaultRootRef) || len(ref) < 2 {
		return nil, fmt.Errorf("engine: decision query %q must be a reference into data, such as %s", q, DefaultQuery)
	}
	switch opts.Evaluator {
	case "":
		opts.Evaluator = EvaluatorPlan
	case EvaluatorPlan, EvaluatorOPA:
	default:
		return nil, fmt.Errorf("engine: evaluator %q: must be %s or %s", opts.Evaluator, EvaluatorPlan, EvaluatorOPA)
	}
	e := &Engine{
		dir:          opts.Dir,
		query:        ref,
		debounce:     opts.Debounce,
		pollInterval: opts.PollInterval,
		strict:       !opts.NonStrict,
		cacheSize:    opts.DecisionCacheSize,
		evaluator:    opts.Evaluator,
		onFallback:   opts.OnPlanFallback,
		log:          opts.Logger,
		onReload:     opts.OnReload,
		limits:       opts.Limits.withDefaults(),
	}
	if e.debounce <= 0 {
		e.debounce = defaultDebounce
	}
	if e.pollInterval <= 0 {
		e.pollInterval = defaultPollInterval
	}
	if e.log == nil {
		e.log = slog.Default()
	}
	if e.cacheSize == 0 {
		e.cacheSize = DefaultDecisionCacheSize
	}
	if opts.Bundle != nil {
		e.log = e.log.With("component", "engine", "bundle", opts.Bundle.Name)
		if e.bundle, err = e.newBundleSource(*opts.Bundle); err != nil {
			return nil, err
		}
		e.read = e.bundle.read
		if err := e.startBundle(); err != nil {
			return nil, err
		}
		return e, nil
	}
	e.log = e.log.With("component", "engine", "policy_dir", e.dir)
	e.read = func() (*fileSet, error) { return readFileSet(e.dir, e.limits) }
	if err := e.Reload(); err != nil {
		return nil, err
	}
	return e, nil
}

// asValue hands results over as the ast.Value topdown produced, instead of
// the default conversion to Go maps: the caller reads the decision as AST, so
// a conversion on every request would be pure cost.
func asValue(t *ast.Term, _ *rego.EvalContext) (any, error) { return t.Value, nil }

// Eval evaluates the decision query for input against the current revision.
// An undefined decision is not an error: it returns Defined false. A nil
// input leaves input undefined in the policy. shared are parts of input
// built once (see Shared).
func (e *Engine) Eval(ctx context.Context, input ast.Value, shared ...*Shared) (Result, error) {
	return e.Current().Eval(ctx, input, shared...)
}

// Snapshot is the revision Current found serving, pinned: what it reads of
// its input and its evaluation stay together even if a reload swaps in
// another revision meanwhile. The zero Snapshot has no policy.
type Snapshot struct {
	e *Engine
	p *policy
}

// Current returns a snapshot of the serving revision.
func (e *Engine) Current() Snapshot { return Snapshot{e: e, p: e.current.Load()} }

// Reads reports whether the policy may read input at path or anywhere
// under it (input.attributes.request.http.headers: path "attributes",
// "request", "http", "headers"). A caller may leave out of the input what
// the policy cannot read: the answer cannot change. It is true for every
// path when the policy uses input as a whole.
func (s Snapshot) Reads(path ...string) bool {
	return s.p == nil || s.p.reads.reads(path)
}

// Eval evaluates the decision query for input against this snapshot's
// revision, as Engine.Eval does. shared are parts of input built once (see
// Shared).
func (s Snapshot) Eval(ctx context.Context, input ast.Value, shared ...*Shared) (Result, error) {
	return s.decide(ctx, input, nil, shared)
}

// Input is an input document a caller can hand over part by part: the
// decision cache reads the parts the policy can read through Get, and the
// whole document is built only when the policy is evaluated. Value must
// return an object, and Get, for each top-level key, the very term Value
// puts under it (nil where Value puts none); the terms are never modified
// once built.
type Input interface {
	Get(key *ast.Term) *ast.Term
	Value() ast.Value
}

// EvalInput is Eval of in.Value(), with the same answer, that builds the
// input document only when the decision cache cannot answer.
func (s Snapshot) EvalInput(ctx context.Context, in Input, shared ...*Shared) (Result, error) {
	return s.decide(ctx, nil, in, shared)
}

// decide is the one evaluation path of Eval and EvalInput: the decision
// cache's answer when it holds the input's key, else OPA's, kept in the
// cache once admitted. The input is in's document when in is not nil
// (built only for OPA), else input.
func (s Snapshot) decide(ctx context.Context, input ast.Value, in Input, shared []*Shared) (Result, error) {
	e, p := s.e, s.p
	if p == nil {
		return Result{}, errors.New("engine: no policy loaded (use New)")
	}
	if err := ctx.Err(); err != nil {
		return Result{Revision: p.revision}, fmt.Errorf("engine: evaluating %s: %w", e.query, err)
	}
	var enc *keyEncoder
	keyed := false
	if p.cache != nil {
		enc = keyEncoders.Get().(*keyEncoder)
		defer keyEncoders.Put(enc)
		if in != nil {
			keyed = enc.inputKey(&p.reads, in, shared)
		} else {
			keyed = enc.decisionKey(&p.reads, input, shared)
		}
		if keyed {
			if res, ok := p.cache.get(enc.buf); ok {
				return res, nil
			}
		}
	}
	if in != nil {
		input = in.Value()
	}
	res, err := e.evaluate(ctx, p, input)
	if err == nil && keyed && p.cache.admit(enc.buf) {
		res.memo = &memo.Slot{}
		p.cache.put(enc.buf, res, resultCost(res))
	}
	return res, err
}

// Revision returns the content hash of the serving policy.
func (e *Engine) Revision() string {
	if p := e.current.Load(); p != nil {
		return p.revision
	}
	return ""
}

// Data reads the data document at path (data.<path[0]>.<path[1]>...) from
// the serving revision, as JSON-like Go values (map[string]any, []any,
// string, json.Number, bool, nil). The result is a copy the caller may
// modify. Only documents loaded from data files are visible, not rules.
func (e *Engine) Data(path ...string) (any, bool) {
	p := e.current.Load()
	if p == nil {
		return nil, false
	}
	var node any = p.data
	for _, key := range path {
		obj, ok := node.(map[string]any)
		if !ok {
			return nil, false
		}
		if node, ok = obj[key]; !ok {
			return nil, false
		}
	}
	return deepCopy(node), true
}

// Status reports the serving revision and the outcome of the last load.
func (e *Engine) Status() Status {
	p := e.current.Load()
	e.statusMu.Lock()
	defer e.statusMu.Unlock()
	st := Status{
		LastError:   e.lastErr,
		LastErrorAt: e.lastErrAt,
		Watching:    e.watching,
	}
	if p != nil {
		st.Ready = true
		st.Revision = p.revision
		st.LoadedAt = p.loadedAt
		st.Files = p.files
		st.DecisionCache = p.decisionCacheState()
		st.Evaluator = p.evaluator
	}
	if e.bundle != nil {
		st.Bundle = e.bundle.statusCopy()
	}
	return st
}

// Reload reads and compiles the directory now and, when it is good, swaps it
// in. When it is not, the serving policy stays and the error (naming file
// and line where OPA reports them) is returned, logged and kept in Status.
// Reloading content identical to the serving revision is cheap and swaps
// nothing.
func (e *Engine) Reload() error {
	return e.reload(false)
}

// reload runs one load attempt. With quiet set, an attempt that finds the
// same content as the previous attempt is not reported at all (polling uses
// it, to avoid an event every interval).
func (e *Engine) reload(quiet bool) error {
	e.reloadMu.Lock()
	defer e.reloadMu.Unlock()
	return e.reloadLocked(quiet)
}

// reloadLocked is reload with reloadMu held.
func (e *Engine) reloadLocked(quiet bool) error {
	start := time.Now()
	prev := e.current.Load()
	next, seen, err := e.attempt(prev)
	if err == nil && e.bundle != nil {
		e.bundle.served(next, e.log)
	}
	if quiet && seen {
		return err
	}
	ev := ReloadEvent{Duration: time.Since(start)}

	if err != nil {
		now := time.Now()
		e.statusMu.Lock()
		e.lastErr, e.lastErrAt = err.Error(), now
		e.statusMu.Unlock()
		if prev != nil {
			ev.Revision, ev.Files = prev.revision, prev.files
			e.log.Error("policy reload refused, previous revision keeps serving",
				"revision", prev.revision, "error", err)
		} else {
			e.log.Error("policy load failed", "error", err)
		}
		ev.Err = err
		e.report(ev)
		return err
	}

	// The refusal is cleared before the new revision serves, so whoever
	// sees the new revision decide never sees an older attempt's error.
	e.statusMu.Lock()
	e.lastErr, e.lastErrAt = "", time.Time{}
	e.statusMu.Unlock()
	if next != prev {
		e.current.Store(next)
		ev.Changed = true
		e.log.Info("policy loaded", "revision", next.revision, "files", next.files,
			"duration", ev.Duration, "decision_cache", next.decisionCacheState(), "evaluator", next.evaluator)
	} else {
		e.log.Debug("policy unchanged", "revision", next.revision)
	}
	ev.Revision, ev.Files, ev.Evaluator = next.revision, next.files, next.evaluator
	e.report(ev)
	return nil
}

func (e *Engine) report(ev ReloadEvent) {
	if e.onReload != nil {
		e.onReload(ev)
	}
}

func (e *Engine) setWatching(on bool) {
	e.statusMu.Lock()
	e.watching = on
	e.statusMu.Unlock()
}

// deepCopy copies a JSON-like document so callers of Data cannot change the
// data a revision was compiled with.
func deepCopy(v any) any {
	switch v := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, x := range v {
			out[k] = deepCopy(x)
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, x := range v {
			out[i] = deepCopy(x)
		}
		return out
	default:
		return v
	}
}
