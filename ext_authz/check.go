package ext_authz

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/guestgate/guestgate/engine"
	"github.com/guestgate/guestgate/tokens"
)

// Header is one header (or query parameter) name and value; the decision
// endpoint answers with it as {"name", "value"}.
type Header struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// Decision is the outcome of one check, in a form both the gRPC and the HTTP
// check answer from. Every field that reaches a client or upstream is
// already encoded.
type Decision struct {
	Allowed    bool
	Status     int    // HTTP status: 200 on an allow
	Reason     string // the precise reason: decision log and metrics
	TokenError string // input.token_error when no token verified
	RequestID  string
	Revision   string // policy revision that decided ("" if none did)
	Kind       string // token kind, when one verified
	Issuer     string
	Subject    string
	Method     string
	Path       string // without the query string
	Latency    time.Duration

	// On an allow: what changes on the way upstream.
	UpstreamHeaders []Header
	RemoveHeaders   []string
	SetQuery        []Header
	RemoveQuery     []string
	ResponseHeaders []Header // added to the upstream's response

	// On a deny: what the client gets.
	DenyHeaders []Header
	DenyBody    string

	DynamicMetadata *structpb.Struct

	// Ownership is the effect the policy named (ownership.go), nil when
	// none; OwnershipOutcome what the state store answered, once applied.
	Ownership        *Ownership
	OwnershipOutcome string
	widget           string // the verified token's custom:wid: with Issuer and Subject, its visitor

	// The wire form of the policy's own headers of a cached decision,
	// built once and shared by every answer of it (read only): the leading
	// entries of UpstreamHeaders and DenyHeaders, when they still match.
	upstreamOpts, denyOpts []*corev3.HeaderValueOption

	// opaEnvoy is the answer in opa-envoy-plugin's format
	// (opaenvoy_answer.go); nil in guestgate's.
	opaEnvoy *opaEnvoyAnswer
}

// Reasons guestgate itself gives, before or instead of the policy.
const (
	ReasonBadPath      = "bad_path"
	ReasonBadQuery     = "bad_query"
	ReasonBadBody      = "bad_body"
	ReasonBadRequest   = "bad_request"
	ReasonUndefined    = "decision_undefined"
	ReasonInvalid      = "decision_invalid"
	ReasonPolicyError  = "policy_error"
	ReasonInternal     = "internal_error"
	ReasonNotReady     = "not_ready"
	ReasonAllowed      = "allowed"
	ReasonDeniedPolicy = "denied"
)

// Reasons of a check its caller ended before the policy decided: nothing
// is broken, and nobody reads the answer.
const (
	// ReasonCanceled: the caller went away (a client that hung up, a proxy
	// that gave up). Status StatusClientClosed.
	ReasonCanceled = "canceled"
	// ReasonDeadline: the caller's deadline passed (Envoy's
	// grpc_service.timeout): guestgate was slower than its caller allows.
	// Status 504.
	ReasonDeadline = "deadline_exceeded"
)

// ReasonStateUnavailable: the check needed the state store (a channel's
// ownership, the revocation list) and the store could not answer within its
// bound, nor could a recent local read. Status 503. The issuer answers the
// same reason when its replay memory or rate limits are unreachable.
const ReasonStateUnavailable = "state_unavailable"

// StatusClientClosed is the status of a check its caller canceled: 499,
// nginx's "client closed request", which no proxy shows a client (the
// client is gone).
const StatusClientClosed = 499

// Decide runs one check: read the request, verify its token, evaluate the
// policy, and shape the answer. It never fails: whatever goes wrong inside
// is a denial with a stable reason.
func (c *Checker) Decide(ctx context.Context, cr *authv3.CheckRequest) *Decision {
	return c.decide(ctx, cr, false)
}

// decide is Decide for both wires. bodyAbsent says the proxy forwards no
// body (nginx auth_request, Traefik forwardAuth): a request that may carry
// one is then shown to the policy as truncated_body, so body-dependent
// rules deny.
func (c *Checker) decide(ctx context.Context, cr *authv3.CheckRequest, bodyAbsent bool) *Decision {
	return c.decideInspected(ctx, cr, bodyAbsent, nil)
}

// decideInspected is decide, and Inspect when insp is not nil: then the
// shadow decides at once and insp gets what it asks for (inspect.go);
// otherwise a sampled check is offered to the shadow's queue once its
// answer is settled (shadow.go).
func (c *Checker) decideInspected(ctx context.Context, cr *authv3.CheckRequest, bodyAbsent bool, insp *Inspection) (d *Decision) {
	start := time.Now()
	cs := c.compiled.Load()
	d = &Decision{RequestID: requestID(cr)}
	// in is the input once built: the shadow decides from the same one.
	var in *inputDoc
	ctx, span := c.startCheck(ctx, cr) // the check's span and its steps' (trace.go)
	defer func() {
		if p := recover(); p != nil {
			c.logger.Error("check panicked; denied", "request_id", d.RequestID, "panic", fmt.Sprint(p))
			d.deny(http.StatusForbidden, ReasonInternal)
			in = nil
		}
		d.Latency = time.Since(start)
		cs.finish(d) // a denial's answer (response.go)
		c.observe(cs, d)
		switch {
		case insp != nil:
			c.inspect(ctx, insp, in, cs, d)
		case in != nil:
			c.offerShadow(in, cs, d)
		}
		endCheck(span, d)
	}()

	// 1. Read the request (request.go).
	r := readRequest(cr, &cs.check, bodyAbsent)
	d.Method, d.Path = r.method, r.path
	if r.problem != "" {
		d.deny(http.StatusBadRequest, r.problem)
		d.refusedOPAEnvoy(cs.format, r.detail)
		return d
	}

	// 2. Verify its token (tokens) and make it input.token for the
	// serving revision (input.go).
	eng := c.engine.Load()
	var plan *inputPlan
	if eng != nil {
		plan = c.plan(eng.Current(), cs.format)
	}
	vctx, step := c.startStep(ctx, spanVerify)
	token, tok, ok := c.verify(vctx, cs, r.rawToken, d, plan)
	endVerify(step, d)
	if !ok {
		return d
	}
	if eng == nil {
		d.deny(http.StatusServiceUnavailable, ReasonNotReady)
		return d
	}

	// 3. Build the input for the serving revision (input.go) and
	// evaluate it there (evaluation.go).
	in = &inputDoc{r: r, token: token, tok: tok, tokErr: d.TokenError, id: d.RequestID,
		showCredential: cs.showCredential, need: plan}
	ectx, step := c.startStep(ctx, spanEvaluate)
	res, ok := c.evaluate(ectx, in, d)
	endEvaluate(step, d, res, ok)
	if !ok {
		return d
	}

	// 4. Shape the decision into the answer (response.go).
	_, step = c.startStep(ctx, spanDecision)
	defer endDecision(step, d)
	if err := d.respond(res, r, cs); err != nil {
		c.logger.Warn("policy decision has the wrong shape; denied", "request_id", d.RequestID, "revision", res.Revision, "error", err)
	}
	// 5. Apply its ownership effect, cached decision or not (ownership.go).
	if d.Allowed && d.Ownership != nil {
		c.applyOwnership(ctx, cs, d)
	}
	return d
}

// verify returns the request's verified token and its input.token for
// plan (all claims when plan is nil), or nil with
// d.TokenError the stable code of why no token verified (a revoked token
// is "revoked"); d records who a verified token names. ok is false when
// the deny-list could not answer and d is denied state_unavailable.
func (c *Checker) verify(ctx context.Context, cs *compiled, raw string, d *Decision, plan *inputPlan) (_ *tokens.Token, _ *engine.Shared, ok bool) {
	var tok *tokens.Token
	var code string
	switch {
	case raw == "":
		code = tokens.CodeMissing
	case cs.verifier == nil:
		code = tokens.CodeUntrustedIssuer
	default:
		var err error
		if tok, err = cs.verifier.Verify(ctx, raw); err != nil || tok == nil {
			tok, code = nil, tokens.CodeOf(err)
		}
	}
	var shown *engine.Shared
	if tok != nil {
		claims := claimSet{all: true}
		if plan != nil {
			claims = plan.claims
		}
		if shown = tokenInput(tok, claims); shown == nil {
			// Claims the policy cannot be shown: not a verified token.
			c.logger.Warn("token claims cannot be shown to the policy; token refused", "request_id", d.RequestID)
			tok, code = nil, tokens.CodeBadClaims
		}
	}
	if tok != nil {
		revoked, ok := c.revoked(ctx, tok, d)
		if !ok {
			return nil, nil, false
		}
		if revoked {
			tok, shown, code = nil, nil, tokens.CodeRevoked
		}
	}
	if tok != nil {
		d.Kind, d.Issuer, d.Subject = string(tok.Kind), tok.Issuer, tok.Subject
		d.widget = tok.Widget
	} else {
		d.TokenError = code
	}
	return tok, shown, true
}

// deny makes d a denial: nothing of an allow's changes remains.
func (d *Decision) deny(status int, reason string) {
	d.Allowed, d.Status, d.Reason = false, status, reason
	d.UpstreamHeaders, d.RemoveHeaders, d.SetQuery, d.RemoveQuery, d.ResponseHeaders = nil, nil, nil, nil, nil
	d.upstreamOpts = nil
}

// observe tells the observer of the decision and writes it to the decision
// log, sampled as configured.
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
	attrs := []slog.Attr{
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
	}
	if d.Ownership != nil {
		attrs = append(attrs, slog.String("ownership_need", d.Ownership.Need), slog.String("ownership_outcome", d.OwnershipOutcome))
	}
	c.decision.LogAttrs(context.Background(), slog.LevelInfo, "decision", attrs...)
}
