package engine

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing/fstest"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/loader"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
)

// maxDepth bounds the folder nesting read, so a symlink loop that escapes
// the same-folder check (e.g. through a bind mount) still ends.
const maxDepth = 32

// attempt reads the source (the directory, or the bundle last downloaded)
// and, when its content differs from the serving revision, compiles it. It returns prev itself when the content is the
// serving revision. seen reports that the content is the same as the
// previous attempt's, whatever that attempt's outcome.
func (e *Engine) attempt(prev *policy) (next *policy, seen bool, err error) {
	set, err := e.read()
	if err != nil {
		// The same read error twice (a missing directory) is "seen" too, so
		// polling reports it once, not on every tick.
		key := "unreadable: " + err.Error()
		seen = key == e.lastSeen
		e.lastSeen = key
		return nil, seen, err
	}
	seen = set.revision == e.lastSeen
	e.lastSeen = set.revision

	switch {
	case prev != nil && set.revision == prev.hash:
		return prev, seen, nil
	case set.revision == e.failed.revision:
		return nil, seen, e.failed.err
	}
	next, err = compile(set, e.query, e.strict, e.cacheSize, e.evaluator)
	if err != nil {
		e.failed.revision, e.failed.err = set.revision, err
		return nil, seen, err
	}
	e.failed.revision, e.failed.err = "", nil
	return next, seen, nil
}

// fileSet is the directory's loadable files read at one moment. The loader
// parses this in-memory copy rather than the live directory so that the
// revision hash, the compiled policy and Data describe the same bytes even
// while an editor or the kubelet is writing.
type fileSet struct {
	// files holds the files by slash-separated path relative to the
	// directory. fstest.MapFS is the standard library's in-memory fs.FS; it
	// serves the loader's Stat, ReadDir and ReadFile calls.
	files fstest.MapFS
	// revision is the content hash, name what the revision is called: the
	// hash for a directory, the manifest's revision for a bundle that has
	// one.
	revision, name string
	modules        int
	// size is the bytes of every file so far, limits what they may reach.
	size   int64
	limits Limits
}

// Limits bound what one revision may hold, so that a data file or a bundle
// far larger than a policy needs is refused like a compile error instead of
// taking the process's memory: a JSON document takes some 20 times its size
// once loaded.
type Limits struct {
	// Data bounds each data file (.json, .yaml, .yml). Zero means
	// DefaultMaxDataBytes.
	Data int64
	// Revision bounds all the files of a revision together. Zero means
	// DefaultMaxRevisionBytes.
	Revision int64
}

// Defaults of Limits: with the documented 256 MiB container, room for the
// serving revision and the next one being compiled, and the caches.
const (
	DefaultMaxDataBytes     = 4 << 20
	DefaultMaxRevisionBytes = 8 << 20
)

func (l Limits) withDefaults() Limits {
	if l.Data <= 0 {
		l.Data = DefaultMaxDataBytes
	}
	if l.Revision <= 0 {
		l.Revision = DefaultMaxRevisionBytes
	}
	return l
}

// admit checks that a file of size bytes fits the limits, before it is read.
func (s *fileSet) admit(name string, size int64) error {
	if isData(name) && size > s.limits.Data {
		return fmt.Errorf("%w: %s is %d bytes, over the data bound of %d bytes (policy.max_data_bytes)", ErrTooLarge, name, size, s.limits.Data)
	}
	if s.size+size > s.limits.Revision {
		return fmt.Errorf("%w: %s (%d bytes) brings the revision to %d bytes, over the revision bound of %d bytes (policy.max_revision_bytes)", ErrTooLarge, name, size, s.size+size, s.limits.Revision)
	}
	return nil
}

// add puts a file in the set, within the limits.
func (s *fileSet) add(name string, data []byte) error {
	if err := s.admit(name, int64(len(data))); err != nil {
		return err
	}
	s.size += int64(len(data))
	s.files[name] = &fstest.MapFile{Data: data, Mode: 0o444}
	if filepath.Ext(name) == ".rego" {
		s.modules++
	}
	return nil
}

func isData(name string) bool {
	switch filepath.Ext(name) {
	case ".json", ".yaml", ".yml":
		return true
	}
	return false
}

// loadable reports whether a file name is one `opa test` loads from a
// folder, less the Rego tests, which are never served.
func loadable(name string) bool {
	switch filepath.Ext(name) {
	case ".rego":
		return !strings.HasSuffix(name, "_test.rego")
	case ".json", ".yaml", ".yml":
		return true
	}
	return false
}

// readFileSet reads every loadable file under dir, following symlinks and
// skipping dot names, within limits, and hashes them into the revision.
func readFileSet(dir string, limits Limits) (*fileSet, error) {
	info, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("engine: policy directory: %w", err)
	}
	if !info.IsDir() {
		return nil, fmt.Errorf("engine: policy directory %s is not a directory", dir)
	}
	set := &fileSet{files: fstest.MapFS{}, limits: limits.withDefaults()}
	if err := set.walk(dir, ".", []os.FileInfo{info}); err != nil {
		return nil, err
	}
	set.seal()
	return set, nil
}

// seal hashes the files into the revision, which names it unless a name
// was given.
func (set *fileSet) seal() {
	// The revision hashes paths and contents in a fixed order, each length
	// prefixed so that no two different directories hash the same bytes.
	names := slices.Sorted(maps.Keys(set.files))
	h := sha256.New()
	var n [8]byte
	for _, name := range names {
		data := set.files[name].Data
		binary.BigEndian.PutUint64(n[:], uint64(len(name)))
		h.Write(n[:])
		h.Write([]byte(name))
		binary.BigEndian.PutUint64(n[:], uint64(len(data)))
		h.Write(n[:])
		h.Write(data)
	}
	set.revision = hex.EncodeToString(h.Sum(nil))
	if set.name == "" {
		set.name = set.revision
	}
}

// walk reads the folder abs (rel relative to the policy directory).
// ancestors are the folders above it, to refuse symlink loops.
func (s *fileSet) walk(abs, rel string, ancestors []os.FileInfo) error {
	if len(ancestors) > maxDepth {
		return fmt.Errorf("engine: %s: folders nested more than %d deep", rel, maxDepth)
	}
	entries, err := os.ReadDir(abs)
	if err != nil {
		return fmt.Errorf("engine: %w", err)
	}
	for _, ent := range entries {
		name := ent.Name()
		if strings.HasPrefix(name, ".") {
			continue
		}
		full := filepath.Join(abs, name)
		relName := path.Join(rel, name)
		// Stat, not the entry's Lstat type: ConfigMap keys are symlinks
		// into ..data/, and those are the files to load.
		info, err := os.Stat(full)
		if errors.Is(err, fs.ErrNotExist) {
			// Removed since ReadDir, or a dangling symlink (a ConfigMap
			// key deleted while its link is still being cleaned up): the
			// file is gone, as far as this revision goes.
			continue
		}
		if err != nil {
			return fmt.Errorf("engine: %w", err)
		}
		switch {
		case info.IsDir():
			if slices.ContainsFunc(ancestors, func(a os.FileInfo) bool { return os.SameFile(a, info) }) {
				return fmt.Errorf("engine: %s: symlink loop", relName)
			}
			if err := s.walk(full, relName, append(slices.Clip(ancestors), info)); err != nil {
				return err
			}
		case info.Mode().IsRegular() && loadable(name):
			// The size is checked before the file is read: a file too
			// large is never in memory.
			if err := s.admit(relName, info.Size()); err != nil {
				return err
			}
			data, err := os.ReadFile(full)
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err != nil {
				return fmt.Errorf("engine: %w", err)
			}
			if err := s.add(relName, data); err != nil {
				return err
			}
		}
	}
	return nil
}

// compile parses, merges and compiles a file set with OPA's own loader and
// compiler, configured as `opa check --strict` (unless strict is false), and
// prepares the decision query.
func compile(set *fileSet, query ast.Ref, strict bool, cacheSize int, evaluator string) (*policy, error) {
	if set.modules == 0 {
		return nil, ErrNoPolicy
	}
	ctx := context.Background()

	// The loader reports parse errors and data merge conflicts with the
	// file's path relative to the directory, and line for Rego.
	res, err := loader.NewFileLoader().
		WithFS(set.files).
		WithRegoVersion(ast.RegoV1).
		WithProcessAnnotation(true).
		All([]string{"."})
	if err != nil {
		return nil, fmt.Errorf("engine: loading policy: %w", err)
	}

	// Data is stored as AST so evaluation reads it without converting; the
	// loader's Go documents are kept apart for Data.
	store := inmem.NewFromObjectWithOpts(res.Documents,
		inmem.OptRoundTripOnWrite(false), inmem.OptReturnASTValuesOnRead(true))
	// One read transaction for the revision's lifetime: nothing ever writes
	// to this store, and reads through a read transaction are plain lookups,
	// so evaluations share it instead of each taking the store's lock.
	txn, err := store.NewTransaction(ctx)
	if err != nil {
		return nil, fmt.Errorf("engine: %w", err)
	}

	compiler := ast.NewCompiler().
		WithDefaultRegoVersion(ast.RegoV1).
		WithStrict(strict).
		WithUseTypeCheckAnnotations(true).
		// A rule and a data file defining the same path is an error, as
		// when OPA activates a bundle.
		WithPathConflictsCheck(storage.NonEmpty(ctx, store, txn))
	if compiler.Compile(res.ParsedModules()); compiler.Failed() {
		return nil, fmt.Errorf("engine: compiling policy: %w", compiler.Errors)
	}

	if len(compiler.GetRules(query)) == 0 && !dataHas(res.Documents, query) {
		return nil, fmt.Errorf("%w: %s", ErrNoDecision, query)
	}

	pq, err := rego.New(
		rego.ParsedQuery(ast.NewBody(ast.NewExpr(ast.NewTerm(query.Copy())))),
		rego.Compiler(compiler),
		rego.Store(store),
		rego.Transaction(txn),
		rego.GenerateJSON(asValue),
	).PrepareForEval(ctx)
	if err != nil {
		return nil, fmt.Errorf("engine: preparing %s: %w", query, err)
	}
	// The data as one AST value, for evaluations to read without going
	// through the store (evalcache.go): the store's own, not a copy.
	doc, err := store.Read(ctx, txn, storage.RootPath)
	if err != nil {
		return nil, fmt.Errorf("engine: %w", err)
	}
	root, ok := doc.(ast.Value)
	if !ok {
		return nil, fmt.Errorf("engine: the store returned %T for data, not an AST value", doc)
	}
	pl, served := preparePlan(ctx, evaluator, compiler, query, store, txn, root)
	p := &policy{
		plan:      pl,
		evaluator: served,
		dataCache: dataCache{root: root},
		query:     pq,
		txn:       txn,
		data:      res.Documents,
		revision:  set.name,
		hash:      set.revision,
		files:     len(set.files),
		loadedAt:  time.Now(),
		compiler:  compiler,
		reads:     analyseInput(compiler, query),
	}
	p.evalOpts = []rego.EvalOption{
		rego.EvalTransaction(txn),
		rego.EvalMetrics(noopMetrics),
		rego.EvalBaseCache(p.dataCache),
	}
	if cacheSize > 0 && p.reads.off() == "" {
		p.cache = newDecisionCache(cacheSize)
	}
	return p, nil
}

// dataHas reports whether the data documents define ref (data.a.b...), as
// far as its leading string keys go.
func dataHas(docs map[string]any, ref ast.Ref) bool {
	var node any = docs
	for _, t := range ref[1:] {
		key, ok := t.Value.(ast.String)
		if !ok {
			return true // a variable part: existence depends on input
		}
		obj, ok := node.(map[string]any)
		if !ok {
			return false
		}
		if node, ok = obj[string(key)]; !ok {
			return false
		}
	}
	return true
}
