package config

import (
	"errors"
	"os"
	"strings"
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
}

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

func (a *Admin) validate(add func(key, format string, args ...any)) {
	if (a.RevocationTokenFile != "" || a.RevocationTokenEnv != "") && len(a.RevocationToken) < MinRevocationTokenLen {
		add("admin.revocation_token_file", "the revocation token must be at least %d bytes", MinRevocationTokenLen)
	}
}
