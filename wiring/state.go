package wiring

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/guestgate/guestgate/config"
	"github.com/guestgate/guestgate/state"
)

// StateOptions are what a caller adds to the config's state: block.
type StateOptions struct {
	// Now is the clock every expiry is decided with. Nil: time.Now.
	Now func() time.Time
}

// OpenState opens the store cfg's state: block describes: the one place
// guestgate opens it, so the check's ownerships, the issuer's replay
// memory and rate limits and the revocations share one store. It returns
// nil and no error when the config names no store (no state.dir, no
// redis backend): every request that needs one is then denied
// state_unavailable. The caller closes the store.
func OpenState(cfg *config.Config, opts StateOptions) (state.Store, error) {
	o, err := StateOptionsOf(cfg.State)
	if err != nil || o == nil {
		return nil, err
	}
	o.Now = opts.Now
	st, err := state.Open(*o)
	if err != nil {
		return nil, fmt.Errorf("state (%s): %w", cfg.State, err)
	}
	return st, nil
}

// StateOptionsOf maps a state: block to the store's options (nil when it
// names no store), reading the TLS files it names.
func StateOptionsOf(s config.State) (*state.Options, error) {
	if !s.Enabled() {
		return nil, nil
	}
	o := &state.Options{
		Backend:    s.Backend,
		Dir:        s.Dir,
		Timeout:    s.Timeout.D(),
		StaleBound: s.StaleBound.D(),
	}
	if s.Backend != state.BackendRedis {
		return o, nil
	}
	r := s.Redis
	o.Redis = state.RedisOptions{
		Address: r.Address, Username: r.Username, Password: r.Password, DB: r.DB, KeyPrefix: r.KeyPrefix,
		DialTimeout: r.DialTimeout.D(), ReadTimeout: r.ReadTimeout.D(), WriteTimeout: r.WriteTimeout.D(), PoolSize: r.PoolSize,
	}
	if o.StaleBound != 0 && o.StaleBound <= state.DefaultRevocationPoll {
		// The snapshot is refreshed at a quarter of the bound.
		o.RevocationPoll = o.StaleBound / 4
	}
	if r.TLS != nil {
		tc, err := redisTLS(*r.TLS, r.Address)
		if err != nil {
			return nil, err
		}
		o.Redis.TLS = tc
	}
	return o, nil
}

// redisTLS is the TLS spoken to Redis.
func redisTLS(t config.StateTLS, address string) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName}
	if tc.ServerName == "" && !strings.HasPrefix(address, "/") && !strings.HasPrefix(address, "unix://") {
		if host, _, err := net.SplitHostPort(address); err == nil {
			tc.ServerName = host
		}
	}
	if t.CAFile != "" {
		b, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("state.redis.tls.ca_file: cannot read: %w", errors.Unwrap(err))
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("state.redis.tls.ca_file: %s holds no PEM certificate", t.CAFile)
		}
		tc.RootCAs = pool
	}
	if t.CertFile != "" || t.KeyFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("state.redis.tls.cert_file: the client certificate and key_file: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}
