package ext_authz

import (
	"context"
	"log/slog"
	"net/netip"
	"sync/atomic"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"

	"github.com/guestgate/guestgate/config"
	"github.com/guestgate/guestgate/engine"
	"github.com/guestgate/guestgate/state"
	"github.com/guestgate/guestgate/tokens"
)

// Checker answers checks. It is safe for concurrent use; its engine and
// settings are swapped atomically on reload.
type Checker struct {
	authv3.UnimplementedAuthorizationServer

	engine atomic.Pointer[engine.Engine]
	// shadow is the candidate policy decided beside it (shadow.go); nil
	// without one.
	shadow atomic.Pointer[shadowPolicy]
	// inputPlan is what the serving revision reads of the input.
	inputPlan atomic.Pointer[inputPlan]
	// compiled is the current Settings, as checks read them.
	compiled atomic.Pointer[compiled]
	health   *health.Server
	logger   *slog.Logger // operational log
	decision *slog.Logger // the decision log
	observer Observer
	tracer   trace.Tracer // nil: tracing off (trace.go)
	// ownerships is the state store ownership effects are applied
	// against (ownership.go); nil: none configured. offline: guestgate
	// check's, which reports an effect instead of applying it.
	ownerships OwnershipStore
	offline    bool
	// revocations is the deny-list every verified token is checked
	// against (revocation.go); nil: none.
	revocations state.Revocations
}

// Observer is told of every decision (metrics hang here).
type Observer interface {
	Decided(d *Decision)
}

// Observers tells each of its observers, in order.
type Observers []Observer

// Decided tells each observer of d.
func (os Observers) Decided(d *Decision) {
	for _, o := range os {
		o.Decided(d)
	}
}

// Settings is what a config reload changes.
type Settings struct {
	Verifier    *tokens.Verifier // nil: no token verifies (token_error "untrusted_issuer")
	Check       config.Check
	DecisionLog config.DecisionLog
	HTTPCheck   config.HTTPCheck // the HTTP form of the check (http.go)
	Ownership   config.Ownership // the bounds of ownership effects (ownership.go)
}

// compiled is Settings as a check reads them, made once per Update: the
// rates and flags resolved from their defaults, the trusted proxies parsed.
type compiled struct {
	verifier       *tokens.Verifier
	check          config.Check
	preciseReasons bool
	allowRate      float64
	denyRate       float64
	http           config.HTTPCheck
	proxies        []netip.Prefix // trusted proxies of the HTTP check
	format         inputFormat    // check.input_format (opaenvoy.go)
	showCredential bool           // check.show_credential_to_policy, resolved
	ownership      ownershipBounds
}

// ownershipBounds are config.Ownership's, resolved from their defaults.
type ownershipBounds struct {
	idle        time.Duration
	maxChannels int
}

// Options configure a Checker.
type Options struct {
	Logger      *slog.Logger // operational log; default slog.Default()
	DecisionLog *slog.Logger // decision log; default the operational log
	Observer    Observer     // optional
	// Tracing traces every check (trace.go, NewTracerProvider). Nil: off,
	// at no cost to a check.
	Tracing *sdktrace.TracerProvider
	// State is the store ownership effects are applied against
	// (wiring.OpenState). Nil: every request whose decision names one is
	// denied state_unavailable, or, Offline, answered as the policy
	// decided with the effect reported (OwnershipOutcome not_applied):
	// for guestgate check, which decides one request without the store.
	State   OwnershipStore
	Offline bool
	// Revocations is the deny-list (the state store): a verified token it
	// covers is token_error "revoked". Nil: no deny-list (the tools).
	Revocations state.Revocations
}

// The gRPC service names health reports on: "" (the whole server) and the
// ext_authz service.
var healthServices = []string{"", authv3.Authorization_ServiceDesc.ServiceName}

// New returns a Checker that denies with not_ready until SetEngine.
func New(s Settings, opts Options) *Checker {
	c := &Checker{health: health.NewServer(), logger: opts.Logger, decision: opts.DecisionLog, observer: opts.Observer,
		ownerships: opts.State, offline: opts.Offline && opts.State == nil, revocations: opts.Revocations}
	if c.logger == nil {
		c.logger = slog.Default()
	}
	if c.decision == nil {
		c.decision = c.logger
	}
	if opts.Tracing != nil {
		c.tracer = opts.Tracing.Tracer(tracerName)
	}
	for _, name := range healthServices {
		c.health.SetServingStatus(name, healthpb.HealthCheckResponse_NOT_SERVING)
	}
	c.Update(s)
	return c
}

// Update swaps in new settings (a config reload). In-flight checks finish
// with the settings they started with.
func (c *Checker) Update(s Settings) {
	cs := &compiled{verifier: s.Verifier, check: s.Check, allowRate: 1, denyRate: 1, http: s.HTTPCheck,
		format: formatOf(&s.Check), showCredential: s.Check.ShowsCredential(),
		ownership: ownershipBounds{idle: s.Ownership.Idle.D(), maxChannels: s.Ownership.MaxChannels}}
	if cs.ownership.idle <= 0 {
		cs.ownership.idle = config.DefaultOwnershipIdle
	}
	if cs.ownership.maxChannels <= 0 {
		cs.ownership.maxChannels = config.DefaultOwnershipMaxChannels
	}
	if s.HTTPCheck.Enabled() {
		proxies, err := s.HTTPCheck.Proxies()
		if err != nil {
			// Validated at load; a bad list built in code trusts no one.
			c.logger.Error("HTTP check: trusted proxies refused; every HTTP check is denied", "error", err)
		}
		cs.proxies = proxies
	}
	if s.Check.PreciseReasons != nil {
		cs.preciseReasons = *s.Check.PreciseReasons
	}
	if !s.DecisionLog.Full {
		if r := s.DecisionLog.AllowSampleRate; r != nil {
			cs.allowRate = *r
		}
		if r := s.DecisionLog.DenySampleRate; r != nil {
			cs.denyRate = *r
		}
	}
	c.compiled.Store(cs)
}

// SetEngine makes the checker ready: health reports SERVING from now on.
func (c *Checker) SetEngine(e *engine.Engine) {
	c.engine.Store(e)
	for _, name := range healthServices {
		c.health.SetServingStatus(name, healthpb.HealthCheckResponse_SERVING)
	}
}

// Ready says whether a policy is loaded.
func (c *Checker) Ready() bool { return c.engine.Load() != nil }

// Shutdown reports NOT_SERVING, so Envoy stops sending new checks.
func (c *Checker) Shutdown() { c.health.Shutdown() }

// Register puts the ext_authz and health services on a gRPC server.
func (c *Checker) Register(s *grpc.Server) {
	authv3.RegisterAuthorizationServer(s, c)
	healthpb.RegisterHealthServer(s, c.health)
}

// ServerOptions are the gRPC server options the check is served with. The
// benchmark's no-op floor server uses the same, so the two differ only in
// what a Check does.
func ServerOptions(maxMessageBytes int) []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.MaxRecvMsgSize(maxMessageBytes),
		grpc.MaxSendMsgSize(maxMessageBytes),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.ForceServerCodecV2(newCheckCodec()),
	}
}

// Check implements Envoy's Authorization service. It answers with a
// CheckResponse, a denial on any failure, in every input format: where
// opa-envoy-plugin answers a gRPC error (a decision it cannot read), the
// opa-envoy format answers the 403 denial Envoy would make of that error
// with failure_mode_allow off, so that no Envoy setting can turn a broken
// decision into an allow.
func (c *Checker) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	return c.Decide(ctx, req).CheckResponse(), nil
}
