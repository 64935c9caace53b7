package config

import (
	"fmt"
	"net"
	"path/filepath"
	"reflect"
	"strings"
	"time"
)

// State configures what guestgate keeps between requests (package state):
// today the ownership of visitors' own Kite channels. Without a state:
// block (no dir, no redis) nothing is kept, and every request that needs an
// ownership is denied state_unavailable.
type State struct {
	// Backend is embedded (a bbolt file under Dir, one node, kept across
	// restarts) or redis (state.redis: a fleet sharing one Redis primary).
	// Empty: embedded.
	Backend string `yaml:"backend"`
	// Dir holds the embedded store's file, state.db (created 0600, the
	// directory 0700 if missing). It must be writable and survive a
	// restart of the process (on Kubernetes a volume, not the image's
	// read-only root). Required for the embedded backend; empty with no
	// redis: no state.
	Dir string `yaml:"dir"`
	// Timeout bounds every operation on the store: a slower one denies
	// state_unavailable. Empty: 250ms.
	Timeout Duration `yaml:"timeout"`
	// StaleBound bounds how old a local answer of the Redis backend may be
	// when Redis does not answer. Empty: 1s.
	StaleBound Duration `yaml:"stale_bound"`
	// Ownership bounds visitors' own Kite channels.
	Ownership Ownership `yaml:"ownership"`
	// Redis configures the redis backend.
	Redis StateRedis `yaml:"redis"`
}

// Ownership bounds the Kite channels visitors create for themselves.
type Ownership struct {
	// Idle ends an ownership this long after its last use (the create or
	// any command in the channel). Empty: 24h.
	Idle Duration `yaml:"idle"`
	// MaxChannels bounds the live ownerships of one visitor (issuer,
	// subject, widget), so no visitor reserves ids by the thousand.
	// Empty: 20.
	MaxChannels int `yaml:"max_channels"`
}

// StateRedis is the redis backend: one Redis primary (standalone, or the
// primary behind a managed endpoint; not Redis Cluster).
type StateRedis struct {
	// Address is host:port, or a unix socket as an absolute path or
	// unix:///path. Required for the redis backend.
	Address string `yaml:"address"`
	// Username and the password (password_file or password_env, at most
	// one) authenticate. Empty: none.
	Username     string `yaml:"username"`
	PasswordFile string `yaml:"password_file"`
	PasswordEnv  string `yaml:"password_env"`
	// DB selects the database. Empty: 0.
	DB int `yaml:"db"`
	// KeyPrefix starts every key. Empty: "guestgate:".
	KeyPrefix string `yaml:"key_prefix"`
	// TLS, when set, is spoken on every connection. Empty: plaintext.
	TLS *StateTLS `yaml:"tls"`
	// DialTimeout, ReadTimeout and WriteTimeout bound each connection
	// step; state.timeout bounds the whole operation. Empty: 1s each.
	DialTimeout  Duration `yaml:"dial_timeout"`
	ReadTimeout  Duration `yaml:"read_timeout"`
	WriteTimeout Duration `yaml:"write_timeout"`
	// PoolSize bounds the open connections. Empty: 10 per CPU.
	PoolSize int `yaml:"pool_size"`

	// Password is read from PasswordFile or PasswordEnv at load.
	Password string `yaml:"-"`
}

// StateTLS is the TLS spoken to Redis.
type StateTLS struct {
	// CAFile is the PEM bundle Redis's certificate is verified with.
	// Empty: the system's roots.
	CAFile string `yaml:"ca_file"`
	// ServerName is the name the certificate must hold. Empty: the
	// address's host.
	ServerName string `yaml:"server_name"`
	// CertFile and KeyFile are a client certificate, both or neither.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// Defaults of state:.
const (
	DefaultOwnershipIdle        = 24 * time.Hour
	DefaultOwnershipMaxChannels = 20
)

// Enabled says whether a store is configured at all.
func (s State) Enabled() bool {
	return s.Backend == "redis" || s.Dir != ""
}

func (s *State) resolvePaths(abs func(*string)) {
	abs(&s.Dir)
	abs(&s.Redis.PasswordFile)
	if t := s.Redis.TLS; t != nil {
		abs(&t.CAFile)
		abs(&t.CertFile)
		abs(&t.KeyFile)
	}
}

func (s *State) applyDefaults() {
	if s.Backend == "" {
		s.Backend = "embedded"
	}
	if s.Ownership.Idle == 0 {
		s.Ownership.Idle = Duration(DefaultOwnershipIdle)
	}
	if s.Ownership.MaxChannels == 0 {
		s.Ownership.MaxChannels = DefaultOwnershipMaxChannels
	}
}

func (s *State) readSecrets() error {
	var err error
	s.Redis.Password, err = readSecretPair("state.redis", "password", s.Redis.PasswordFile, s.Redis.PasswordEnv)
	return err
}

// readSecretPair is readSecret for a pair named <name>_file, <name>_env.
func readSecretPair(key, name, file, env string) (string, error) {
	v, err := readSecret(key, file, env)
	if fe, ok := err.(*FieldError); ok {
		fe.Key = strings.Replace(fe.Key, ".secret_", "."+name+"_", 1)
		fe.Msg = strings.ReplaceAll(fe.Msg, "secret_", name+"_")
	}
	return v, err
}

func (s *State) validate(add func(key, format string, args ...any)) {
	switch s.Backend {
	case "embedded":
		if s.Redis != (StateRedis{}) {
			add("state.redis", "set only with backend: redis")
		}
	case "redis":
		if s.Dir != "" {
			add("state.dir", "the redis backend keeps nothing on disk: leave dir empty")
		}
		validateRedisAddress(s.Redis.Address, add)
		if s.Redis.TLS != nil && (s.Redis.TLS.CertFile == "") != (s.Redis.TLS.KeyFile == "") {
			add("state.redis.tls.cert_file", "set cert_file and key_file together")
		}
		if s.Redis.DB < 0 {
			add("state.redis.db", "must not be negative")
		}
		if s.Redis.PoolSize < 0 {
			add("state.redis.pool_size", "must not be negative")
		}
	default:
		add("state.backend", "%q is neither embedded nor redis", s.Backend)
	}
	if s.Timeout.D() > 10*time.Second {
		add("state.timeout", "must be at most 10s: a check waits for it")
	}
	if s.Ownership.Idle.D() < time.Minute {
		add("state.ownership.idle", "must be at least 1m")
	}
	if s.Ownership.MaxChannels < 1 || s.Ownership.MaxChannels > 10000 {
		add("state.ownership.max_channels", "must be between 1 and 10000")
	}
}

func validateRedisAddress(addr string, add func(key, format string, args ...any)) {
	const key = "state.redis.address"
	switch {
	case addr == "":
		add(key, "required for the redis backend")
	case strings.HasPrefix(addr, "unix://"):
		if p := strings.TrimPrefix(addr, "unix://"); !filepath.IsAbs(p) {
			add(key, "a unix socket is unix:///absolute/path")
		}
	case strings.HasPrefix(addr, "/"):
	default:
		if _, _, err := net.SplitHostPort(addr); err != nil {
			add(key, "%q is neither host:port nor a unix socket path", addr)
		}
	}
}

// needs lists the files and variables state: names (Needs).
func (s State) needs(file, env func(key, name string)) {
	file("state.redis.password_file", s.Redis.PasswordFile)
	env("state.redis.password_env", s.Redis.PasswordEnv)
	if t := s.Redis.TLS; t != nil {
		file("state.redis.tls.ca_file", t.CAFile)
		file("state.redis.tls.cert_file", t.CertFile)
		file("state.redis.tls.key_file", t.KeyFile)
	}
}

// String describes the store for logs and /readyz, never a secret.
func (s State) String() string {
	switch {
	case !s.Enabled():
		return "none"
	case s.Backend == "redis":
		return fmt.Sprintf("redis %s", s.Redis.Address)
	}
	return fmt.Sprintf("embedded %s", s.Dir)
}

// SameStore says whether s and o open the same store: only the ownership
// bounds differ, which a reload changes.
func (s State) SameStore(o State) bool {
	s.Ownership, o.Ownership = Ownership{}, Ownership{}
	return reflect.DeepEqual(s, o)
}
