package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/guestgate/guestgate/ext_authz"
	"github.com/guestgate/guestgate/state"
	"github.com/guestgate/guestgate/wiring"
)

// mountRevocations puts POST /v1/revocations on the admin mux when there is
// a state store to write the deny-list to. Without admin.revocation_token
// the route answers 404; the token and the lifetimes are read from the live
// config on every request, so a reload changes them.
func (s *sidecar) mountRevocations(mux *http.ServeMux) {
	if s.store == nil {
		return
	}
	mux.Handle("POST "+ext_authz.RevocationsPath, ext_authz.RevocationHandler(ext_authz.RevocationRoute{
		Store: s.store,
		Token: func() string { return s.cfg.Load().Admin.RevocationToken },
		Lifetime: func(kind state.Kind, issuer string) (time.Duration, bool) {
			return wiring.Lifetimes(s.cfg.Load()).For(kind, issuer)
		},
		Logger: s.logger.With("log", "revocations"),
	}))
}

// processState is the issuer's store when the config names none (no
// state:): an embedded store in a private temporary directory, unlinked as
// soon as it is open (the open file serves on; nothing is left on disk
// whether or not the sidecar is shut down, as validate and check never
// are). The SAT replay memory and the rate limits are then
// this process's alone and forgotten at a restart, as they were before
// there was a store; configure state: to keep them, and a Redis store to
// share them across replicas.
type processState struct {
	state.Store
	dir string
}

func openProcessState() (*processState, error) {
	dir, err := os.MkdirTemp("", "guestgate-state-")
	if err != nil {
		return nil, fmt.Errorf("state: a process-local store for the issuer: %w", err)
	}
	st, err := state.Open(state.Options{Dir: dir})
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("state: a process-local store for the issuer: %w", err)
	}
	// Best effort: where an open file cannot be removed, Close removes it.
	_ = os.RemoveAll(dir)
	return &processState{Store: st, dir: dir}, nil
}

func (p *processState) Close() error {
	err := p.Store.Close()
	_ = os.RemoveAll(p.dir)
	return err
}

// noState is the issuer's store when not even a temporary directory can be
// had (an image FROM scratch has no /tmp): every operation fails, so
// minting refuses 503 state_unavailable, closed, while the checks (and
// guestgate check and validate, which mint nothing) work.
type noState struct{ err error }

func (n noState) fail() error { return fmt.Errorf("%w: %v", state.ErrUnavailable, n.err) }
func (n noState) Remember(context.Context, string, time.Time) (bool, error) {
	return false, n.fail()
}
func (n noState) Allow(context.Context, string, state.Limit) (bool, time.Duration, error) {
	return false, 0, n.fail()
}
func (n noState) Revoke(context.Context, state.Revocation) error { return n.fail() }
func (n noState) Revoked(context.Context, state.TokenRef) (bool, error) {
	return false, n.fail()
}
