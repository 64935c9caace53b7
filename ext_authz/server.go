// Package ext_authz is guestgate's check: Envoy's ext_authz gRPC server
// (and, sharing everything but the wire, the HTTP forms of the same check).
//
// One request flows through three steps, each in its own file:
// request.go turns a CheckRequest into the policy's input, evaluation.go
// verifies the token and asks the policy engine, response.go turns the
// decision into Envoy's answer. Whatever goes wrong in between denies.
package ext_authz

import (
	"context"
	cryptorand "crypto/rand"
	"encoding/hex"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"

	"github.com/guestgate/guestgate/config"
	"github.com/guestgate/guestgate/engine"
	"github.com/guestgate/guestgate/tokens"
)

// Checker answers checks. It is safe for concurrent use; its engine and
// settings are swapped atomically on reload.
type Checker struct {
	authv3.UnimplementedAuthorizationServer

	engine atomic.Pointer[engine.Engine]
	// inputPlan is what the serving revision reads of the input.
	inputPlan atomic.Pointer[inputPlan]
	// compiled is the current Settings, as checks read them.
	compiled atomic.Pointer[compiled]
	health   *health.Server
	logger   *slog.Logger // operational log
	decision *slog.Logger // the decision log
	observer Observer
}

// Observer is told of every decision (metrics hang here).
type Observer interface {
	Decided(d *Decision)
}

// Settings is what a config reload changes.
type Settings struct {
	Verifier    *tokens.Verifier // nil: no token verifies (token_error "untrusted_issuer")
	Check       config.Check
	DecisionLog config.DecisionLog
	HTTPCheck   config.HTTPCheck // the HTTP form of the check (http.go)
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
}

// Options configure a Checker.
type Options struct {
	Logger      *slog.Logger // operational log; default slog.Default()
	DecisionLog *slog.Logger // decision log; default the operational log
	Observer    Observer     // optional
}

// The gRPC service names health reports on: "" (the whole server) and the
// ext_authz service.
var healthServices = []string{"", authv3.Authorization_ServiceDesc.ServiceName}

// New returns a Checker that denies with not_ready until SetEngine.
func New(s Settings, opts Options) *Checker {
	c := &Checker{health: health.NewServer(), logger: opts.Logger, decision: opts.DecisionLog, observer: opts.Observer}
	if c.logger == nil {
		c.logger = slog.Default()
	}
	if c.decision == nil {
		c.decision = c.logger
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
	cs := &compiled{verifier: s.Verifier, check: s.Check, allowRate: 1, denyRate: 1, http: s.HTTPCheck}
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

// Check implements Envoy's Authorization service. It always answers with a
// CheckResponse, never a bare gRPC error: a denial on any failure.
func (c *Checker) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	return c.Decide(ctx, req).CheckResponse(), nil
}

// verify returns the verified token, or the stable token_error code.
func (cs *compiled) verify(ctx context.Context, raw string) (*tokens.Token, string) {
	if raw == "" {
		return nil, tokens.CodeMissing
	}
	if cs.verifier == nil {
		return nil, tokens.CodeUntrustedIssuer
	}
	tok, err := cs.verifier.Verify(ctx, raw)
	if err != nil || tok == nil {
		return nil, tokens.CodeOf(err)
	}
	return tok, ""
}

func (c *Checker) observe(cs *compiled, d *Decision) {
	if c.observer != nil {
		c.observer.Decided(d)
	}
	rate := cs.denyRate
	if d.Allowed {
		rate = cs.allowRate
	}
	if rate <= 0 || rate < 1 && rand.Float64() >= rate {
		return
	}
	// Never the token, a header, a body or a query string: the path and the
	// codes only.
	c.decision.LogAttrs(context.Background(), slog.LevelInfo, "decision",
		slog.String("request_id", d.RequestID),
		slog.String("method", d.Method),
		slog.String("path", d.Path),
		slog.Bool("allowed", d.Allowed),
		slog.Int("status", d.Status),
		slog.String("reason", d.Reason),
		slog.String("token_error", d.TokenError),
		slog.String("kind", d.Kind),
		slog.String("issuer", d.Issuer),
		slog.String("subject", d.Subject),
		slog.String("revision", d.Revision),
		slog.Int64("latency_us", d.Latency.Microseconds()),
	)
}

// requestID takes Envoy's x-request-id when it is a plain id, else makes one.
func requestID(cr *authv3.CheckRequest) string {
	if id := cr.GetAttributes().GetRequest().GetHttp().GetHeaders()["x-request-id"]; validRequestID(id) {
		return id
	}
	return newRequestID()
}

func newRequestID() string {
	var b [12]byte
	_, _ = cryptorand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func validRequestID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	return strings.Trim(id, "0123456789abcdefABCDEF-") == ""
}
