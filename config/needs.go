package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Need is one thing a config document names that must exist where
// guestgate runs: an environment variable, a file or a directory.
type Need struct {
	// Key is the config key that names it, e.g. tokens.issuers[1].secret_env.
	Key string
	// Kind is "environment variable", "file" or "directory".
	Kind string
	// Name is the variable's name or the path, resolved as Load resolves it.
	Name string
	// Problem says why it cannot be used here ("not set", "no such file or
	// directory", "permission denied", ...); empty when it can.
	Problem string
}

const (
	needEnv  = "environment variable"
	needFile = "file"
	needDir  = "directory"
)

// Needs reads the config file at path and lists every environment
// variable, file and directory it names, each checked where this process
// runs, so that one answer says everything a deployment must provide
// instead of Load stopping at the first. It reads no secret's value and
// validates nothing else: a document that does not decode is an error.
func Needs(path string) ([]Need, error) {
	doc, err := readDoc(path)
	if err != nil {
		return nil, err
	}
	c, err := decode(doc, filepath.Dir(path))
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	var out []Need
	file := func(key, p string) {
		if p != "" {
			out = append(out, Need{Key: key, Kind: needFile, Name: p, Problem: pathProblem(p, false)})
		}
	}
	env := func(key, name string) {
		if name == "" {
			return
		}
		n := Need{Key: key, Kind: needEnv, Name: name}
		if v, ok := os.LookupEnv(name); !ok {
			n.Problem = "not set"
		} else if strings.TrimSpace(v) == "" {
			n.Problem = "empty"
		}
		out = append(out, n)
	}
	if !c.OPABundles.Enabled() { // a bundle replaces the directory
		out = append(out, Need{Key: "policy.dir", Kind: needDir, Name: c.Policy.Dir, Problem: pathProblem(c.Policy.Dir, true)})
	}
	for i, ti := range c.Tokens.Issuers {
		key := fmt.Sprintf("tokens.issuers[%d]", i)
		file(key+".jwks_file", ti.JWKSFile)
		file(key+".secret_file", ti.SecretFile)
		env(key+".secret_env", ti.SecretEnv)
	}
	for i, in := range c.Issuer.Integrations {
		key := fmt.Sprintf("issuer.integrations[%d]", i)
		file(key+".secret_file", in.SecretFile)
		env(key+".secret_env", in.SecretEnv)
	}
	for _, m := range []struct {
		key string
		k   MintedKind
	}{{"minting.secure_anonymous", c.Minting.SAT}, {"minting.access", c.Minting.Access}, {"minting.xbs_anonymous", c.Minting.XBS}} {
		for i, p := range m.k.KeyFiles {
			file(fmt.Sprintf("%s.key_files[%d]", m.key, i), p)
		}
	}
	c.State.needs(file, env)
	return out, nil
}

// pathProblem says why p cannot be read as a file (dir false) or listed as
// a directory (dir true), or "" when it can.
func pathProblem(p string, dir bool) string {
	f, err := os.Open(p)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			return pe.Err.Error()
		}
		return err.Error()
	}
	defer f.Close()
	st, err := f.Stat()
	switch {
	case err != nil:
		return err.Error()
	case dir && !st.IsDir():
		return "not a directory"
	case !dir && st.IsDir():
		return "a directory, not a file"
	}
	return ""
}

// MissingError is a config whose environment variables, files or
// directories are not all here: every one that is not, at once.
type MissingError struct {
	Path    string
	Missing []Need
}

// Has says whether key names one of the missing.
func (e *MissingError) Has(key string) bool {
	for _, n := range e.Missing {
		if n.Key == key {
			return true
		}
	}
	return false
}

func (e *MissingError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "config %s needs what this machine does not provide:\n", e.Path)
	for _, n := range e.Missing {
		fmt.Fprintf(&b, "  %s %s: %s (%s)\n", n.Kind, n.Name, n.Problem, n.Key)
	}
	b.WriteString("set the variables and put the files at those paths (on Kubernetes: Secrets and ConfigMaps mounted there, docs/kubernetes.md), " +
		"or point the keys above at yours (a relative path is read from the config file's directory)")
	return b.String()
}

// CheckNeeds is nil when everything the config at path names is here, a
// *MissingError listing what is not, or the error that kept Needs from
// reading the document.
func CheckNeeds(path string) error {
	needs, err := Needs(path)
	if err != nil {
		return err
	}
	var missing []Need
	for _, n := range needs {
		if n.Problem != "" {
			missing = append(missing, n)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	return &MissingError{Path: path, Missing: missing}
}
