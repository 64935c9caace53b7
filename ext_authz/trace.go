package ext_authz

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"

	"github.com/guestgate/guestgate/config"
	"github.com/guestgate/guestgate/engine"
	"github.com/guestgate/guestgate/internal/memo"
)

// A check's span and its three children (docs/tracing.md): one tree per
// check, whichever wire it came by, since every wire runs decide.
const (
	tracerName   = "github.com/guestgate/guestgate/ext_authz"
	spanCheck    = "guestgate.check"
	spanVerify   = "guestgate.verify"   // the token's verification
	spanEvaluate = "guestgate.evaluate" // the policy's evaluation
	spanDecision = "guestgate.decision" // the decision shaped into the answer
)

// The attributes a span carries: stable codes, booleans, the status, the
// policy's hash and the request id (validated hex, validRequestID). Never
// a token, a header's value, a claim, a path or a body: a trace backend is
// read by more people than the decision log.
const (
	attrRequestID  = attribute.Key("guestgate.request_id")
	attrAllowed    = attribute.Key("guestgate.allowed")
	attrStatus     = attribute.Key("guestgate.status")
	attrReason     = attribute.Key("guestgate.reason") // a short code (validReason)
	attrTokenKind  = attribute.Key("guestgate.token.kind")
	attrTokenError = attribute.Key("guestgate.token.error")
	attrRevision   = attribute.Key("guestgate.policy.revision")
	attrCached     = attribute.Key("guestgate.decision.cached") // the decision cache answered
)

// untraced is the span of a check when tracing is off: boxed once, so an
// untraced check allocates nothing for it.
var untraced trace.Span = noop.Span{}

// NewTracerProvider returns the tracer provider cfg describes, exporting
// the spans in batches over OTLP, or nil when tracing is off. Its
// Shutdown sends what is left. The exporter also reads the OTEL_EXPORTER_OTLP_*
// environment variables for what the config does not say (the headers a
// collector authenticates with, a timeout, compression); the config wins
// where both speak.
func NewTracerProvider(ctx context.Context, cfg config.Tracing, version string) (*sdktrace.TracerProvider, error) {
	if !cfg.Enabled {
		return nil, nil
	}
	tlsCfg, err := tracingTLS(cfg)
	if err != nil {
		return nil, err
	}
	var exp sdktrace.SpanExporter
	switch cfg.Protocol {
	case config.TracingGRPC:
		opts := []otlptracegrpc.Option{otlptracegrpc.WithEndpoint(cfg.Endpoint)}
		if cfg.Insecure {
			opts = append(opts, otlptracegrpc.WithInsecure())
		} else {
			opts = append(opts, otlptracegrpc.WithTLSCredentials(credentials.NewTLS(tlsCfg)))
		}
		exp, err = otlptracegrpc.New(ctx, opts...)
	case config.TracingHTTP:
		opts := []otlptracehttp.Option{otlptracehttp.WithEndpoint(cfg.Endpoint), otlptracehttp.WithURLPath(cfg.URLPath)}
		if cfg.Insecure {
			opts = append(opts, otlptracehttp.WithInsecure())
		} else {
			opts = append(opts, otlptracehttp.WithTLSClientConfig(tlsCfg))
		}
		exp, err = otlptracehttp.New(ctx, opts...)
	default:
		return nil, fmt.Errorf("tracing.protocol: %q is not one of grpc, http", cfg.Protocol)
	}
	if err != nil {
		return nil, fmt.Errorf("tracing: the OTLP exporter: %w", err)
	}
	// The environment's resource (OTEL_RESOURCE_ATTRIBUTES: a pod's name)
	// under the configured service name.
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(
		attribute.String("service.name", cfg.ServiceName), attribute.String("service.version", version)))
	if err != nil {
		_ = exp.Shutdown(ctx)
		return nil, fmt.Errorf("tracing: resource: %w", err)
	}
	return sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp),
		// A request that comes with a trace context keeps its sampled flag,
		// so a trace is kept or dropped whole; the ratio decides the rest.
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(cfg.Ratio()))),
		sdktrace.WithResource(res),
	), nil
}

// tracingTLS is the TLS the exporter speaks to the collector with.
func tracingTLS(cfg config.Tracing) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.CAFile != "" {
		b, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("tracing.ca_file: cannot read: %w", errors.Unwrap(err))
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("tracing.ca_file: %s holds no PEM certificate", cfg.CAFile)
		}
		tc.RootCAs = pool
	}
	if cfg.CertFile != "" || cfg.KeyFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("tracing.cert_file: the client certificate and key_file: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// startCheck starts a check's span, the child of the trace context the
// request came with; with tracing off it is untraced, at no cost.
func (c *Checker) startCheck(ctx context.Context, cr *authv3.CheckRequest) (context.Context, trace.Span) {
	if c.tracer == nil {
		return ctx, untraced
	}
	return c.tracer.Start(withParent(ctx, cr), spanCheck, trace.WithSpanKind(trace.SpanKindServer))
}

// startStep starts a child of the check's span in ctx: none when the check
// is not traced or not sampled.
func (c *Checker) startStep(ctx context.Context, name string) (context.Context, trace.Span) {
	if c.tracer == nil || !trace.SpanFromContext(ctx).IsRecording() {
		return ctx, untraced
	}
	return c.tracer.Start(ctx, name)
}

// endCheck ends a check's span with what the check ended with.
func endCheck(span trace.Span, d *Decision) {
	if span.IsRecording() {
		span.SetAttributes(attrRequestID.String(d.RequestID), attrAllowed.Bool(d.Allowed), attrStatus.Int(d.Status),
			attrReason.String(d.Reason), attrRevision.String(d.Revision))
		setToken(span, d)
		if failed(d.Reason) {
			span.SetStatus(codes.Error, d.Reason)
		}
	}
	span.End()
}

// endVerify ends the verification's span: the kind that verified, or the
// code of why none did.
func endVerify(span trace.Span, d *Decision) {
	if span.IsRecording() {
		setToken(span, d)
	}
	span.End()
}

func setToken(span trace.Span, d *Decision) {
	if d.Kind != "" {
		span.SetAttributes(attrTokenKind.String(d.Kind))
	} else if d.TokenError != "" {
		span.SetAttributes(attrTokenError.String(d.TokenError))
	}
}

// endEvaluate ends the evaluation's span: the revision that decided,
// whether its decision cache answered, or why it failed.
func endEvaluate(span trace.Span, d *Decision, res engine.Result, ok bool) {
	if span.IsRecording() {
		// Answered from the cache: a decision whose answer an earlier check
		// already shaped (respond keeps it beside the cached decision). One
		// just put in the cache was evaluated, so it does not count.
		_, cached := memo.Load[*Decision](res.Memo())
		span.SetAttributes(attrRevision.String(res.Revision), attrCached.Bool(cached))
		if !ok {
			span.SetAttributes(attrReason.String(d.Reason))
			if failed(d.Reason) {
				span.SetStatus(codes.Error, d.Reason)
			}
		}
	}
	span.End()
}

// endDecision ends the decision's span with the answer it shaped.
func endDecision(span trace.Span, d *Decision) {
	if span.IsRecording() {
		span.SetAttributes(attrAllowed.Bool(d.Allowed), attrStatus.Int(d.Status), attrReason.String(d.Reason))
		if failed(d.Reason) {
			span.SetStatus(codes.Error, d.Reason)
		}
	}
	span.End()
}

// failed says whether a reason is guestgate or the policy failing, not a
// decision: the span's status is an error then.
func failed(reason string) bool {
	switch reason {
	case ReasonInternal, ReasonPolicyError, ReasonInvalid, ReasonNotReady:
		return true
	}
	return false
}

// traceparentHeader is the W3C trace context header (the propagator reads
// it by this name).
const traceparentHeader = "traceparent"

// withParent puts in ctx the trace context the request came with: from the
// gRPC call's metadata, where Envoy's own ext_authz span is (when Envoy
// traces), else from the request's traceparent header, as the CheckRequest
// carries it whatever the wire (the HTTP forms and the decision endpoint
// build it from the request's headers). A missing or malformed one starts
// a new trace.
func withParent(ctx context.Context, cr *authv3.CheckRequest) context.Context {
	var tc propagation.TraceContext
	for _, tp := range [2]string{grpcTraceparent(ctx), headerTraceparent(cr)} {
		if tp == "" {
			continue
		}
		if sc := trace.SpanContextFromContext(tc.Extract(ctx, traceparent(tp))); sc.IsValid() && sc.IsRemote() {
			return trace.ContextWithRemoteSpanContext(ctx, sc)
		}
	}
	return ctx
}

// traceparent is a propagation.TextMapCarrier of the traceparent alone.
// tracestate is not taken: guestgate passes no trace context on, so a
// client's tracestate would serve only to put its text in the spans.
type traceparent string

func (t traceparent) Get(key string) string {
	if key == traceparentHeader {
		return string(t)
	}
	return ""
}

func (traceparent) Set(string, string) {}
func (traceparent) Keys() []string     { return []string{traceparentHeader} }

// grpcTraceparent is the gRPC call's traceparent, if it came by gRPC with
// exactly one.
func grpcTraceparent(ctx context.Context) string {
	if vs := metadata.ValueFromIncomingContext(ctx, traceparentHeader); len(vs) == 1 {
		return vs[0]
	}
	return ""
}

// headerTraceparent is the request's traceparent header: from headers, or
// from header_map when Envoy sends that instead; "" when there is none or
// more than one (which of them is the parent is not for guestgate to guess).
func headerTraceparent(cr *authv3.CheckRequest) string {
	h := cr.GetAttributes().GetRequest().GetHttp()
	if v, ok := h.GetHeaders()[traceparentHeader]; ok {
		return v
	}
	var found string
	n := 0
	for _, hv := range h.GetHeaderMap().GetHeaders() {
		if strings.EqualFold(hv.GetKey(), traceparentHeader) {
			if found = hv.GetValue(); found == "" {
				found = string(hv.GetRawValue())
			}
			n++
		}
	}
	if n != 1 {
		return ""
	}
	return found
}
