package config

import (
	"errors"
	"net"
	"os"
	"strings"
	"time"
)

// MinRevocationTokenLen is the least length of admin.revocation_token.
const MinRevocationTokenLen = 32

// Admin configures the admin listener's routes that change state.
type Admin struct {
	// RevocationTokenFile (or RevocationTokenEnv) holds the bearer token
	// of POST /v1/revocations, at least 32 bytes (white space around it
	// trimmed). Empty: the route is off (404).
	RevocationTokenFile string `yaml:"revocation_token_file"`
	RevocationTokenEnv  string `yaml:"revocation_token_env"`
	// RevocationToken is what the file or variable held.
	RevocationToken string `yaml:"-"`
	// Pprof serves Go's profiles (net/http/pprof) under /debug/pprof/ on
	// the admin listener, and records mutex contention (one event in
	// PprofMutexFraction) and blocking (one event per PprofBlockRate of
	// time blocked, on average) for its mutex and block profiles: what
	// docs/performance.md's "Where a check waits" was measured with. A
	// profile names the code, never a request's contents, but a trace or
	// a CPU profile costs the process while it runs: on a loopback admin
	// listener only (kubectl port-forward reaches it). Empty (false): off,
	// and neither is recorded.
	Pprof bool `yaml:"pprof"`
}

// PprofMutexFraction and PprofBlockRate are the runtime's sampling of
// mutex contention and blocking while admin.pprof is on
// (runtime.SetMutexProfileFraction, runtime.SetBlockProfileRate).
const (
	PprofMutexFraction = 10
	PprofBlockRate     = 10 * time.Microsecond
)

func (a *Admin) resolvePaths(abs func(*string)) { abs(&a.RevocationTokenFile) }

func (a *Admin) readSecrets() error {
	const key = "admin.revocation_token"
	switch {
	case a.RevocationTokenFile != "" && a.RevocationTokenEnv != "":
		return fieldErr(key+"_file", "set revocation_token_file or revocation_token_env, not both")
	case a.RevocationTokenFile != "":
		b, err := os.ReadFile(a.RevocationTokenFile)
		if err != nil {
			return fieldErr(key+"_file", "cannot read: %v", errors.Unwrap(err))
		}
		a.RevocationToken = strings.TrimSpace(string(b))
	case a.RevocationTokenEnv != "":
		v, ok := os.LookupEnv(a.RevocationTokenEnv)
		if !ok || v == "" {
			return fieldErr(key+"_env", "environment variable %s is not set", a.RevocationTokenEnv)
		}
		a.RevocationToken = strings.TrimSpace(v)
	}
	return nil
}

func (a *Admin) validate(adminAddr string, add func(key, format string, args ...any)) {
	if host, _, err := net.SplitHostPort(adminAddr); a.Pprof && (err != nil || !IsLoopback(host)) {
		add("admin.pprof", "profiles are served on a loopback admin listener only, not %q (listen.admin)", adminAddr)
	}
	if (a.RevocationTokenFile != "" || a.RevocationTokenEnv != "") && len(a.RevocationToken) < MinRevocationTokenLen {
		add("admin.revocation_token_file", "the revocation token must be at least %d bytes", MinRevocationTokenLen)
	}
}
