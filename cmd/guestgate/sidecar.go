package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"reflect"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"google.golang.org/grpc"

	"github.com/guestgate/guestgate/config"
	"github.com/guestgate/guestgate/decisionlog"
	"github.com/guestgate/guestgate/engine"
	"github.com/guestgate/guestgate/ext_authz"
	"github.com/guestgate/guestgate/internal/logwriter"
	"github.com/guestgate/guestgate/issuer"
	"github.com/guestgate/guestgate/metrics"
	"github.com/guestgate/guestgate/state"
	"github.com/guestgate/guestgate/tokens"
	"github.com/guestgate/guestgate/wiring"
)

// sidecar is one running guestgate: the check, the policy engine, the
// token verifier, the issuer (which holds the signer), and the three
// listeners.
type sidecar struct {
	logger  *slog.Logger
	checker *ext_authz.Checker
	engine  *engine.Engine
	shadow  *engine.Engine      // the shadow policy, nil without one
	opaLog  *decisionlog.Sender // decision_log.opa, nil when off
	issuer  *issuer.Issuer
	metrics *metrics.Metrics // served on the admin listener's /metrics
	store   state.Store      // the state store (wiring.OpenState), nil when none; closed at shutdown
	// issuerState is the issuer's store when the config names none
	// (fleet.go); nil otherwise. Closed at shutdown.
	issuerState *processState

	cfg      atomic.Pointer[config.Config]
	verifier atomic.Pointer[tokens.Verifier]

	mu           sync.Mutex // guards the config reload status
	configLoaded time.Time
	configError  string
	configErrAt  time.Time

	grpcServer              *grpc.Server
	httpServer, adminServer *http.Server
	grpcLis, httpLis        net.Listener
	adminLis                net.Listener
}

// sidecarOptions are what newSidecar takes besides the config; the caller
// owns each.
type sidecarOptions struct {
	// Tracing traces the checks; nil: untraced (serve builds it from
	// cfg.Tracing).
	Tracing *sdktrace.TracerProvider
	// Store is the state store (wiring.OpenState); the sidecar closes it
	// at shutdown. Nil: none (ownership effects deny state_unavailable).
	Store state.Store
	// Offline: guestgate check, which reports ownership effects.
	Offline bool
	// LogOutput is the queue the logger writes to stderr through (serve
	// builds it); its drops are counted in the metrics. Nil: none.
	LogOutput *logwriter.Writer
}

// newSidecar builds everything a config describes and loads the policy.
// It binds nothing yet.
func newSidecar(ctx context.Context, cfg *config.Config, logger *slog.Logger, opts sidecarOptions) (*sidecar, error) {
	tracing := opts.Tracing
	s := &sidecar{logger: logger, metrics: metrics.New(), store: opts.Store}
	if opts.LogOutput != nil {
		s.metrics.LogOutput(logOutputStats(opts.LogOutput))
	}
	if s.store != nil {
		s.metrics.StateStore(func() metrics.StateHealth {
			h := s.store.Health()
			return metrics.StateHealth{Backend: h.Backend, Healthy: h.Healthy, Reconnects: h.Reconnects, CacheAnswers: h.CacheAnswers}
		})
	}
	signer, verifier, err := wiring.Tokens(ctx, cfg, wiring.Options{Hooks: tokenHooks(s.metrics)})
	if err != nil {
		return nil, err
	}
	s.cfg.Store(cfg)
	s.verifier.Store(verifier)
	s.configLoaded = time.Now()
	if s.opaLog, err = newOPALog(cfg, s.metrics, logger.With("log", "opa_decision_log")); err != nil {
		verifier.Close()
		return nil, fmt.Errorf("decision_log.opa: %w", err)
	}
	observers := ext_authz.Observers{checkMetrics{s.metrics}}
	if s.opaLog != nil {
		observers = append(observers, ext_authz.NewOPALog(s.opaLog, cfg.Policy.Query))
	}
	copts := ext_authz.Options{
		Logger:      logger,
		DecisionLog: logger.With("log", "decision"),
		Tracing:     tracing,
		Observer:    observers,
		Offline:     opts.Offline,
	}
	if opts.Store != nil {
		// One store serves the ownership effects, the deny-list and the
		// issuer: on Redis, the fleet's.
		copts.State, copts.Revocations = opts.Store, opts.Store
	}
	s.checker = ext_authz.New(settingsOf(cfg, verifier), copts)
	eopts := engine.Options{
		Query:    cfg.Policy.Query,
		Debounce: cfg.Policy.Debounce.D(),
		// -1 in the config is off; the engine takes any negative number.
		DecisionCacheSize: cfg.Policy.DecisionCache,
		Evaluator:         cfg.Policy.Evaluator,
		OnPlanFallback:    func(error) { s.metrics.PlanFallback() },
		Logger:            logger,
		// The engine logs every load and refusal itself.
		OnReload: func(ev engine.ReloadEvent) { s.metrics.PolicyReload(ev.Revision, ev.Err) },
	}
	if err = policySource(&eopts, cfg, s.metrics, logger); err == nil {
		s.engine, err = engine.New(eopts)
	}
	if err != nil {
		verifier.Close()
		return nil, fmt.Errorf("policy %s: %w", cfg.Policy.Dir, err)
	}
	if s.shadow, err = newShadow(cfg, s.checker, s.metrics, logger); err != nil {
		verifier.Close()
		return nil, err
	}
	// The issuer reads widgets and channels from the engine's data: the
	// same registry the policy decides with.
	var issuerState issuer.State
	if s.store != nil {
		issuerState = s.store
	} else if s.issuerState, err = openProcessState(); err != nil {
		logger.Warn("no state store for the issuer: minting refuses state_unavailable", "error", err)
		issuerState = noState{err}
	} else {
		issuerState = s.issuerState
	}
	s.issuer, err = issuer.New(wiring.IssuerSettings(cfg, signer, verifier), issuer.Options{State: issuerState, Registry: s.engine, Observer: s.metrics, Logger: logger.With("log", "issuer")})
	if err != nil {
		verifier.Close()
		if s.issuerState != nil {
			s.issuerState.Close()
		}
		return nil, err
	}
	return s, nil
}

func settingsOf(cfg *config.Config, v *tokens.Verifier) ext_authz.Settings {
	return ext_authz.Settings{Verifier: v, Check: cfg.Check, DecisionLog: cfg.DecisionLog, HTTPCheck: cfg.HTTPCheck, Ownership: cfg.State.Ownership}
}

// listen binds the three listeners.
func (s *sidecar) listen() error {
	ls, err := bind(s.cfg.Load().Listen)
	if err != nil {
		return err
	}
	s.use(ls)
	return nil
}

// use takes listeners bound before the sidecar was built.
func (s *sidecar) use(ls listeners) {
	s.grpcLis, s.httpLis, s.adminLis = ls.grpc, ls.http, ls.admin
}

// listeners are the three sockets guestgate serves on.
type listeners struct{ grpc, http, admin net.Listener }

func (ls listeners) close() {
	for _, l := range []net.Listener{ls.grpc, ls.http, ls.admin} {
		if l != nil {
			l.Close()
		}
	}
}

// bind opens the listeners of l. An address that cannot be had fails
// with the listener's name, its config key and what to do about it.
func bind(l config.Listen) (listeners, error) {
	var ls listeners
	for _, b := range []struct {
		lis             *net.Listener
		name, key, addr string
	}{
		{&ls.grpc, "the gRPC ext_authz listener", "listen.grpc", l.GRPC},
		{&ls.http, "the public HTTP listener", "listen.http", l.HTTP},
		{&ls.admin, "the admin HTTP listener", "listen.admin", l.Admin},
	} {
		lis, err := net.Listen("tcp", b.addr)
		if err != nil {
			ls.close()
			hint := ""
			if errors.Is(err, syscall.EADDRINUSE) {
				hint = fmt.Sprintf(": another program (another guestgate?) holds it; stop it, or set %s to a free address in a config file (guestgate serve --config FILE)", b.key)
			}
			return listeners{}, fmt.Errorf("%s: %s cannot listen on %s: %w%s", b.key, b.name, b.addr, err, hint)
		}
		*b.lis = lis
	}
	return ls, nil
}

// serve runs until ctx is done, then stops accepting, drains in-flight
// checks within the shutdown timeout, and returns.
func (s *sidecar) serve(ctx context.Context) error {
	cfg := s.cfg.Load()
	s.grpcServer = grpc.NewServer(ext_authz.ServerOptions(cfg.Listen.MaxMessageBytes)...)
	s.checker.Register(s.grpcServer)
	s.httpServer = &http.Server{Handler: s.checker.HTTP(s.publicMux()), ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: 10 * time.Second, IdleTimeout: 60 * time.Second, MaxHeaderBytes: 32 << 10}
	s.adminServer = &http.Server{Handler: s.adminGuard(s.adminMux()), ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: 10 * time.Second, IdleTimeout: 60 * time.Second, MaxHeaderBytes: 32 << 10}

	s.checker.SetEngine(s.engine)
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 3)
	go func() { errc <- s.grpcServer.Serve(s.grpcLis) }()
	go func() { errc <- ignoreClosed(s.httpServer.Serve(s.httpLis)) }()
	go func() { errc <- ignoreClosed(s.adminServer.Serve(s.adminLis)) }()
	go func() {
		if err := s.engine.Watch(runCtx); err != nil {
			s.logger.Error("policy watch stopped; the loaded policy keeps serving", "error", err)
		}
	}()
	if s.shadow != nil {
		go s.checker.RunShadow(runCtx)
		go func() {
			if err := s.shadow.Watch(runCtx); err != nil {
				s.logger.Error("shadow policy watch stopped; the loaded shadow keeps deciding", "error", err)
			}
		}()
	}
	// The OPA decision log outlives the listeners: the checks drained at
	// shutdown are logged too, then it sends what is left and stops.
	logCtx, stopLog := context.WithCancel(context.Background())
	logDone := make(chan struct{})
	if s.opaLog != nil {
		go func() { s.opaLog.Run(logCtx); close(logDone) }()
	} else {
		close(logDone)
	}
	defer func() { stopLog(); <-logDone }()
	if cfg.Path != "" {
		go func() {
			if err := config.Watch(runCtx, func() []string { return s.cfg.Load().Files() }, cfg.ReadAt, 100*time.Millisecond, s.logger, s.reloadConfig); err != nil {
				s.logger.Error("config watch stopped; the loaded config keeps serving", "error", err)
			}
		}()
	}
	s.logger.Info("guestgate serving", "grpc", s.grpcLis.Addr().String(), "http", s.httpLis.Addr().String(),
		"admin", s.adminLis.Addr().String(), "revision", s.engine.Revision())

	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
		s.logger.Error("a listener failed; shutting down", "error", err)
	}
	// Stop the watchers first, so no config reload starts during the drain:
	// it would swap in a verifier after shutdown closed the current one.
	cancel()
	s.shutdown(cfg.Listen.ShutdownTimeout.D())
	return err
}

// shutdown stops accepting and drains, bounded by timeout.
func (s *sidecar) shutdown(timeout time.Duration) {
	s.logger.Info("shutting down: draining in-flight checks", "timeout", timeout.String())
	s.checker.Shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	done := make(chan struct{})
	go func() { s.grpcServer.GracefulStop(); close(done) }()
	var wg sync.WaitGroup
	for _, srv := range []*http.Server{s.httpServer, s.adminServer} {
		wg.Add(1)
		go func() { defer wg.Done(); _ = srv.Shutdown(ctx) }()
	}
	select {
	case <-done:
	case <-ctx.Done():
		s.logger.Warn("drain timed out; stopping in-flight checks")
		s.grpcServer.Stop()
	}
	wg.Wait()
	if v := s.verifier.Load(); v != nil {
		v.Close()
	}
	if s.store != nil {
		if err := s.store.Close(); err != nil {
			s.logger.Warn("state store did not close cleanly", "error", err)
		}
	}
	if s.issuerState != nil {
		s.issuerState.Close()
	}
	s.logger.Info("stopped")
}

func ignoreClosed(err error) error {
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// reloadConfig re-reads the config file: a good one swaps in new trusted
// issuers, secrets and check settings; a bad one is refused and the last
// good config keeps serving.
func (s *sidecar) reloadConfig() {
	old := s.cfg.Load()
	next, err := config.Load(old.Path)
	if err == nil {
		err = needsRestart(old, next)
	}
	var signer *tokens.Signer
	var verifier *tokens.Verifier
	if err == nil {
		signer, verifier, err = wiring.Tokens(context.Background(), next, wiring.Options{Hooks: tokenHooks(s.metrics)})
	}
	if err == nil {
		if err = s.issuer.Update(wiring.IssuerSettings(next, signer, verifier)); err != nil {
			verifier.Close()
		}
	}
	s.metrics.ConfigReload(err)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.configError, s.configErrAt = err.Error(), time.Now()
		s.logger.Error("config reload refused; the last good config keeps serving", "error", err)
		return
	}
	s.cfg.Store(next)
	prev := s.verifier.Swap(verifier)
	s.checker.Update(settingsOf(next, verifier))
	s.configLoaded, s.configError, s.configErrAt = time.Now(), "", time.Time{}
	s.logger.Info("config reloaded", "issuers", len(next.Tokens.Issuers))
	if prev != nil {
		// Checks that started with the old verifier may still be running.
		time.AfterFunc(30*time.Second, prev.Close)
	}
}

// needsRestart refuses a reload that changes what only a restart can.
func needsRestart(old, next *config.Config) error {
	switch {
	case old.Listen != next.Listen:
		return errors.New("listen: changing listeners needs a restart")
	case !old.Policy.Equal(next.Policy):
		return errors.New("policy: changing the policy directory, query or shadow needs a restart")
	case !reflect.DeepEqual(old.OPABundles, next.OPABundles):
		return errors.New("services, bundles, keys: changing the bundle needs a restart")
	case !reflect.DeepEqual(old.DecisionLog.OPA, next.DecisionLog.OPA):
		return errors.New("decision_log.opa: changing the OPA decision log needs a restart")
	case old.Development != next.Development:
		return errors.New("development: needs a restart")
	case old.Playground.Enabled != next.Playground.Enabled:
		return errors.New("playground.enabled: turning the playground on or off needs a restart")
	case old.Admin.Pprof != next.Admin.Pprof:
		return errors.New("admin.pprof: turning the profiles on or off needs a restart")
	case !old.Tracing.Equal(next.Tracing):
		return errors.New("tracing: changing tracing needs a restart")
	case !old.State.SameStore(next.State):
		return errors.New("state: changing the state store needs a restart (state.ownership reloads)")
	}
	return nil
}

// adminMux serves /healthz, /readyz, /metrics and, when on, the playground
// and the decision endpoint (admin.go).
func (s *sidecar) adminMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", s.readyz)
	s.mountPlayground(mux)
	s.mountRevocations(mux)
	s.issuer.Register(mux) // the playground calls its own origin
	mux.Handle("GET /metrics", s.metrics.Handler())
	s.mountPprof(mux)
	return mux
}

// publicMux serves the public listener's routes: the issuer's (minting
// and the JWKS).
func (s *sidecar) publicMux() *http.ServeMux {
	mux := http.NewServeMux()
	s.issuer.Register(mux)
	return mux
}

type readiness struct {
	Ready  bool            `json:"ready"`
	Policy policyReadiness `json:"policy"`
	// Shadow is the shadow policy's state; it never makes guestgate unready.
	Shadow *policyReadiness  `json:"shadow,omitempty"`
	Config configReadiness   `json:"config"`
	Keys   []keySetReadiness `json:"keys"`
	State  stateReadiness    `json:"state"`
}

type policyReadiness struct {
	Revision string `json:"revision"`
	// DecisionCache is "on: ..." or "off: <why>" (engine.Status).
	DecisionCache string    `json:"decision_cache"`
	LoadedAt      time.Time `json:"loaded_at"`
	Files         int       `json:"files"`
	LastError     string    `json:"last_error,omitempty"`
	LastErrorAt   time.Time `json:"last_error_at,omitzero"`
	// Bundle is the bundle's state when the policy comes from one.
	Bundle *engine.BundleStatus `json:"bundle,omitempty"`
}

type configReadiness struct {
	Path        string    `json:"path"`
	Development bool      `json:"development"`
	LoadedAt    time.Time `json:"loaded_at"`
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
}

type keySetReadiness struct {
	Source    string    `json:"source"`
	Keys      int       `json:"keys"`
	Ready     bool      `json:"ready"`
	LastFetch time.Time `json:"last_fetch,omitzero"`
	LastError string    `json:"last_error,omitempty"`
}

func policyReadinessOf(st engine.Status) policyReadiness {
	return policyReadiness{Revision: st.Revision, DecisionCache: st.DecisionCache, LoadedAt: st.LoadedAt, Files: st.Files, LastError: st.LastError, LastErrorAt: st.LastErrorAt, Bundle: st.Bundle}
}

// readyz reports the policy, config and key state. It is 200 once a policy
// serves and every key set has keys; a refused reload shows in last_error
// while the last good policy or config keeps serving.
func (s *sidecar) readyz(w http.ResponseWriter, r *http.Request) {
	st := s.engine.Status()
	cfg := s.cfg.Load()
	rd := readiness{
		Ready:  s.checker.Ready() && st.Ready,
		Policy: policyReadinessOf(st),
	}
	if s.shadow != nil {
		sh := policyReadinessOf(s.shadow.Status())
		rd.Shadow = &sh
	}
	s.mu.Lock()
	rd.Config = configReadiness{Path: cfg.Path, Development: cfg.Development, LoadedAt: s.configLoaded, LastError: s.configError, LastErrorAt: s.configErrAt}
	s.mu.Unlock()
	rd.State = s.stateReadiness(cfg)
	if v := s.verifier.Load(); v != nil {
		for _, k := range v.Status() {
			rd.Keys = append(rd.Keys, keySetReadiness{Source: k.Source, Keys: k.Keys, Ready: k.Ready, LastFetch: k.LastFetch, LastError: k.LastError})
			if !k.Ready {
				rd.Ready = false
			}
		}
	}
	w.Header().Set("Content-Type", "application/json")
	if !rd.Ready {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(rd)
}
