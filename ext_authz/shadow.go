package ext_authz

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/guestgate/guestgate/engine"
)

// A shadow policy is a candidate decided beside the live one, off the
// answer's path: a check that is sampled hands its request to a bounded
// queue once its own answer is settled, and one worker decides it again
// with the shadow's revision, compares and counts. The live check only
// draws the sample and offers the request to the queue, without waiting:
// when the queue is full the request is not shadowed and the drop is
// counted. A shadow never changes an answer, and its failures (a policy
// error, a decision of the wrong shape) are its own reasons, compared like
// any other.
//
// cost: a sampled check pays a random draw, the sum of its header and body
// sizes (the queue's byte bound) and a channel send; BenchmarkCheckShadow.

// ShadowObserver is told of every shadowed decision, with both reasons as
// bounded labels (ShadowLabelOther for a reason outside the policies'
// literals and guestgate's own), and of every check the shadow could not
// take.
type ShadowObserver interface {
	ShadowDecided(live, shadow string)
	ShadowDropped()
}

// ShadowLabelOther is the label of a reason that is neither guestgate's own
// nor a string written in the live or the shadow policy (one computed from
// the request, say): labels stay a finite set.
const ShadowLabelOther = "other"

// ShadowOptions configure the shadow policy.
type ShadowOptions struct {
	// Engine serves the candidate policy, loaded and reloaded as the live
	// one. Required.
	Engine *engine.Engine
	// Sample is the fraction of checks also decided by the shadow, 0 to 1.
	Sample float64
	// Queue bounds the checks waiting for the shadow. Zero: 1024.
	Queue int
	// Observer counts; nil counts nothing.
	Observer ShadowObserver
}

// maxShadowQueueBytes bounds the request bytes (headers and body) waiting
// for the shadow, whatever the queue's length: a queue of large requests
// drops instead of growing.
const maxShadowQueueBytes = 32 << 20

// shadowTimeout bounds one shadow decision: the request it shadows has
// long been answered.
const shadowTimeout = 5 * time.Second

type shadowPolicy struct {
	eng      *engine.Engine
	sample   float64
	queue    chan shadowJob
	bytes    atomic.Int64 // request bytes waiting in queue
	observer ShadowObserver
	// eval decides with the shadow's revision: a Checker of its own, so
	// that the input plan it keeps is the shadow revision's and its log
	// lines say they are the shadow's.
	eval *Checker
	// labels are the reasons counted under their own name, for the
	// revisions they were made for.
	labels atomic.Pointer[shadowLabels]
}

type shadowJob struct {
	in    *inputDoc // the live check's input: read only from here on
	cs    *compiled
	live  shadowAnswer
	bytes int64
}

// shadowAnswer is what the live and the shadow decision are compared on.
type shadowAnswer struct {
	allowed  bool
	status   int
	reason   string
	revision string
	rev      engine.Snapshot
}

func answerOf(d *Decision, rev engine.Snapshot) shadowAnswer {
	return shadowAnswer{allowed: d.Allowed, status: d.Status, reason: d.Reason, revision: d.Revision, rev: rev}
}

func (a shadowAnswer) agrees(b shadowAnswer) bool {
	return a.allowed == b.allowed && a.status == b.status && a.reason == b.reason
}

// SetShadow installs a shadow policy (call it once, before serving); its
// worker runs in RunShadow.
func (c *Checker) SetShadow(o ShadowOptions) {
	queue := o.Queue
	if queue <= 0 {
		queue = 1024
	}
	sh := &shadowPolicy{eng: o.Engine, sample: o.Sample, queue: make(chan shadowJob, queue), observer: o.Observer}
	sh.eval = &Checker{logger: c.logger.With("policy", "shadow"), decision: c.decision}
	c.shadow.Store(sh)
}

// RunShadow decides the queued checks with the shadow policy until ctx is
// done. Run one per Checker, after SetShadow; without a shadow it returns
// at once.
func (c *Checker) RunShadow(ctx context.Context) {
	sh := c.shadow.Load()
	if sh == nil {
		return
	}
	for {
		select {
		case <-ctx.Done():
			return
		case job := <-sh.queue:
			c.runShadowJob(ctx, sh, job)
		}
	}
}

// runShadowJob decides one queued check with the shadow and compares.
func (c *Checker) runShadowJob(ctx context.Context, sh *shadowPolicy, job shadowJob) {
	sh.bytes.Add(-job.bytes)
	ctx, cancel := context.WithTimeout(ctx, shadowTimeout)
	defer cancel()
	c.shadowCompare(sh, job.in, job.live, c.shadowDecide(ctx, sh, job.in, job.cs))
}

// offerShadow hands a finished live check to the shadow's queue when it is
// sampled, never waiting.
func (c *Checker) offerShadow(in *inputDoc, cs *compiled, d *Decision) {
	sh := c.shadow.Load()
	if sh == nil || sh.sample <= 0 || sh.sample < 1 && rand.Float64() >= sh.sample {
		return
	}
	size := requestBytes(in.r)
	if sh.bytes.Add(size) > maxShadowQueueBytes {
		sh.bytes.Add(-size)
		sh.dropped()
		return
	}
	select {
	case sh.queue <- shadowJob{in: in, cs: cs, live: answerOf(d, in.need.rev), bytes: size}:
	default:
		sh.bytes.Add(-size)
		sh.dropped()
	}
}

// requestBytes is about what a queued request holds on to.
func requestBytes(r *request) int64 {
	n := int64(256)
	for k, v := range r.headers {
		n += int64(len(k) + len(v))
	}
	if r.http != nil {
		n += int64(len(r.http.GetBody()) + len(r.http.GetRawBody()))
	}
	return n
}

func (sh *shadowPolicy) dropped() {
	if sh.observer != nil {
		sh.observer.ShadowDropped()
	}
}

// shadowDecide decides the live check's request again with the shadow's
// serving revision, from the same request and token: steps 3 and 4 of
// decide, with the input built for the shadow revision.
// Whatever goes wrong is the shadow's denial, as in decide: a panic too.
func (c *Checker) shadowDecide(ctx context.Context, sh *shadowPolicy, live *inputDoc, cs *compiled) (d *Decision) {
	r := *live.r // the shadow's input may record its own problem
	d = &Decision{RequestID: live.id, TokenError: live.tokErr, Method: r.method, Path: r.path}
	defer func() {
		if p := recover(); p != nil {
			sh.eval.logger.Error("shadow check panicked; the shadow denied", "request_id", d.RequestID, "panic", fmt.Sprint(p))
			d.deny(http.StatusForbidden, ReasonInternal)
			cs.finish(d)
		}
	}()
	in := &inputDoc{r: &r, token: live.token, tokErr: live.tokErr, id: live.id, showCredential: live.showCredential,
		need: sh.eval.plan(sh.eng.Current(), live.need.format)}
	in.tok = live.tok
	if live.token != nil {
		// input.token with the claims the shadow's revision reads (the
		// live check showed it, so it converts).
		in.tok = tokenInput(live.token, in.need.claims)
	}
	if res, ok := sh.eval.evaluate(ctx, in, d); ok {
		if err := d.respond(res, &r, cs); err != nil {
			sh.eval.logger.Warn("policy decision has the wrong shape; denied", "request_id", d.RequestID, "revision", res.Revision, "error", err)
		}
	}
	cs.finish(d)
	return d
}

// shadowCompare counts a shadowed decision and logs it when it differs
// from the live one: one line, with the request id and both answers, never
// a token, a header, a query or a body.
func (c *Checker) shadowCompare(sh *shadowPolicy, in *inputDoc, live shadowAnswer, s *Decision) {
	shadow := answerOf(s, sh.eng.Current())
	if sh.observer != nil {
		labels := sh.labelsFor(live.rev, shadow.rev)
		sh.observer.ShadowDecided(labels.of(live.reason), labels.of(shadow.reason))
	}
	if live.agrees(shadow) {
		return
	}
	c.decision.LogAttrs(context.Background(), slog.LevelInfo, "shadow decision differs",
		slog.String("request_id", in.id),
		slog.String("method", in.r.method),
		slog.String("path", in.r.path),
		slog.Bool("live_allowed", live.allowed),
		slog.Int("live_status", live.status),
		slog.String("live_reason", live.reason),
		slog.String("live_revision", live.revision),
		slog.Bool("shadow_allowed", shadow.allowed),
		slog.Int("shadow_status", shadow.status),
		slog.String("shadow_reason", shadow.reason),
		slog.String("shadow_revision", shadow.revision),
	)
}

// shadowLabels are the reasons counted under their own name: guestgate's
// own and the string literals of the live and the shadow revision.
type shadowLabels struct {
	live, shadow engine.Snapshot
	known        map[string]bool
}

// guestgateReasons are the reasons guestgate gives itself, before or
// instead of a policy.
var guestgateReasons = []string{
	ReasonBadPath, ReasonBadQuery, ReasonBadBody, ReasonBadRequest, ReasonUndefined, ReasonInvalid,
	ReasonPolicyError, ReasonInternal, ReasonNotReady, ReasonAllowed, ReasonDeniedPolicy,
	ReasonUntrustedProxy, ReasonUnsupportedByWire,
	ReasonStateUnavailable, ReasonChannelOwnedByAnother, ReasonChannelLimitReached, ReasonChannelNotOwned,
}

func (l *shadowLabels) of(reason string) string {
	if l.known[reason] {
		return reason
	}
	return ShadowLabelOther
}

// labelsFor returns the labels of the two revisions, made once per pair.
func (sh *shadowPolicy) labelsFor(live, shadow engine.Snapshot) *shadowLabels {
	if l := sh.labels.Load(); l != nil && l.live == live && l.shadow == shadow {
		return l
	}
	known := live.Literals()
	for s := range shadow.Literals() {
		known[s] = true
	}
	for _, s := range guestgateReasons {
		known[s] = true
	}
	delete(known, ShadowLabelOther)
	l := &shadowLabels{live: live, shadow: shadow, known: known}
	sh.labels.Store(l)
	return l
}
