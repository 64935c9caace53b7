package engine

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
	"testing/fstest"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/bundle"
)

// ErrBundle means a bundle was refused before its policy was compiled: it
// is not a bundle, its signature does not verify, its manifest's roots do
// not cover what it holds, or it holds what guestgate does not serve.
var ErrBundle = errors.New("engine: bundle refused")

// readBundle turns an OPA bundle (a gzipped tarball, as a bundle server
// serves it and `opa build` writes it) into a file set, the same a
// directory becomes, so that it is compiled, refused and swapped exactly as
// a directory is. vc verifies its signatures: nil accepts an unsigned
// bundle only.
//
// Two passes over the bytes: the first copies the files that make a
// revision (Rego modules, less tests, and data.json, data.yaml, data.yml,
// as OPA reads a bundle) within limits, so that an oversized file is
// refused before anything parses it; the second is OPA's own bundle reader,
// which verifies the signatures and the manifest's roots.
func readBundle(raw []byte, vc *bundle.VerificationConfig, limits Limits) (*fileSet, error) {
	set := &fileSet{files: fstest.MapFS{}, limits: limits.withDefaults()}
	loader := bundle.NewTarballLoaderWithBaseURL(bytes.NewReader(raw), "")
	for {
		f, err := loader.NextFile()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrBundle, err)
		}
		name := strings.TrimPrefix(path.Clean("/"+f.Path()), "/")
		if !bundleFile(name) {
			continue
		}
		var buf bytes.Buffer
		// Read copies at most n bytes and says EOF when the file is shorter.
		if _, err := f.Read(&buf, set.limits.Revision+1); err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%w: %s: %w", ErrBundle, name, err)
		}
		if err := set.add(name, buf.Bytes()); err != nil {
			return nil, err
		}
	}

	b, err := bundle.NewCustomReader(bundle.NewTarballLoaderWithBaseURL(bytes.NewReader(raw), "").
		WithSizeLimitBytes(set.limits.Revision)).
		WithSizeLimitBytes(set.limits.Revision).
		WithRegoVersion(ast.RegoV1).
		WithBundleVerificationConfig(vc).
		Read()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBundle, err)
	}
	switch {
	case b.Type() != bundle.SnapshotBundleType:
		return nil, fmt.Errorf("%w: a %s bundle; guestgate serves snapshot bundles only", ErrBundle, b.Type())
	case len(b.WasmModules) > 0 || len(b.PlanModules) > 0:
		return nil, fmt.Errorf("%w: it holds Wasm or plan modules; guestgate evaluates Rego only", ErrBundle)
	}
	set.name = b.Manifest.Revision
	set.seal()
	return set, nil
}

// bundleFile reports whether a bundle's file is part of the revision: what
// OPA's bundle reader loads, less Rego tests, as for a directory.
func bundleFile(name string) bool {
	if strings.HasPrefix(path.Base(name), ".") {
		return false // .manifest, .signatures.json
	}
	switch path.Base(name) {
	case "data.json", "data.yaml", "data.yml":
		return true
	}
	return path.Ext(name) == ".rego" && !strings.HasSuffix(name, "_test.rego")
}
