// Package state is what guestgate keeps between requests: Kite channel
// ownership, the SAT replay memory, rate limits and revocations, behind one
// interface with two backends: embedded (a bbolt file, one node) and Redis
// (a fleet of replicas sharing one Redis primary).
//
// Every operation takes a context and is bounded by Options.Timeout; a
// failing or slow backend returns an error wrapping ErrUnavailable, and
// callers deny on any error. Bad input returns an error wrapping ErrInvalid.
//
// Expiry is decided with the Options.Now clock on every read, so a record
// is never honoured after its expiry even before the backend has dropped
// it; the backends drop expired records on their own schedule (the embedded
// sweep, Redis key TTLs). The one exception is the Redis rate limiter,
// which runs on the Redis server's clock so that every replica spends from
// the same bucket whatever its own clock says. On Redis every other expiry
// is decided by the clock of the replica that asks, so clock skew between
// replicas shifts an expiry by as much: milliseconds under NTP, against
// expiries of minutes.
package state

import (
	"context"
	"errors"
	"time"
)

var (
	// ErrUnavailable wraps every failure of the backend: unreachable, slow,
	// closed, or answering out of shape. Callers answer state_unavailable.
	ErrUnavailable = errors.New("state unavailable")
	// ErrInvalid wraps every refusal of bad input.
	ErrInvalid = errors.New("invalid state request")
)

// Store is everything guestgate keeps. Callers depend on the smallest
// interface that serves them: the ext_authz check on Ownerships and
// Revocations, the issuer on ReplayMemory and RateLimiter.
type Store interface {
	Ownerships
	ReplayMemory
	RateLimiter
	Revocations
	// Health reports the backend's state for /readyz and the metrics.
	Health() Health
	// Close stops the background work and releases the backend. Every
	// operation after Close fails with ErrUnavailable.
	Close() error
}

// Owner is who owns a Kite channel: one visitor of one widget.
type Owner struct {
	Issuer  string // the token's iss
	Subject string // the token's sub
	Widget  string // the token's custom:wid
}

// ClaimOutcome is the answer to a claim.
type ClaimOutcome int

const (
	// Claimed: the channel was free and is now the claimer's.
	Claimed ClaimOutcome = iota + 1
	// AlreadyYours: the claimer owned it already; its idle expiry restarts.
	AlreadyYours
	// OwnedByAnother: someone else owns it; nothing changed.
	OwnedByAnother
	// OverLimit: the channel is free but the claimer owns as many channels
	// as it may; nothing changed.
	OverLimit
)

func (o ClaimOutcome) String() string {
	switch o {
	case Claimed:
		return "claimed"
	case AlreadyYours:
		return "already_yours"
	case OwnedByAnother:
		return "owned_by_another"
	case OverLimit:
		return "over_limit"
	}
	return "unknown"
}

// RequireOutcome is the answer to a requirement of ownership.
type RequireOutcome int

const (
	// Yours: the requirer owns the channel; its idle expiry restarts.
	Yours RequireOutcome = iota + 1
	// NotOwned: nobody owns the channel (never claimed, or expired).
	NotOwned
	// OwnedByOther: someone else owns the channel.
	OwnedByOther
)

func (o RequireOutcome) String() string {
	switch o {
	case Yours:
		return "yours"
	case NotOwned:
		return "not_owned"
	case OwnedByOther:
		return "owned_by_other"
	}
	return "unknown"
}

// Ownerships holds Kite channel ownership.
//
// An ownership ends idle after its last use (Claim or Require). It is not
// released when its widget's anonymous sessions are turned off: the policy
// already refuses every request of such a widget's tokens before it asks
// for an ownership, so the widget flag is taken into account at no cost to
// the store, with no index of ownerships by widget to keep, no registry
// change to detect and fan out to every replica, and no change missed while
// a replica was down. The record lapses at its idle expiry; a widget turned
// back on within that time finds its visitors' channels still theirs.
type Ownerships interface {
	// Claim makes channel owner's, atomically: of many claimers racing
	// for one free channel, exactly one gets Claimed. owner may hold at
	// most maxPerOwner live ownerships.
	Claim(ctx context.Context, channel string, owner Owner, idle time.Duration, maxPerOwner int) (ClaimOutcome, error)
	// Require says whether owner owns channel, and when it does restarts
	// the idle expiry (see each backend for how precisely).
	Require(ctx context.Context, channel string, owner Owner, idle time.Duration) (RequireOutcome, error)
}

// ReplayMemory remembers single-use keys (SAT signatures).
type ReplayMemory interface {
	// Remember records key until until and reports true, or reports false
	// when key is recorded and not yet expired (a replay).
	Remember(ctx context.Context, key string, until time.Time) (bool, error)
}

// Limit is a token bucket: Burst requests at once, refilled at PerSecond.
type Limit struct {
	PerSecond float64
	Burst     int
}

// RateLimiter spends from a bucket per key, shared by every user of the
// store (every replica, on Redis).
type RateLimiter interface {
	// Allow spends one token of key's bucket and reports true, or spends
	// nothing and reports false with how long until a token is there.
	Allow(ctx context.Context, key string, limit Limit) (bool, time.Duration, error)
}

// Kind is what a revocation names.
type Kind string

const (
	// RevokeToken names one token by its jti.
	RevokeToken Kind = "jti"
	// RevokeSubject names every token of one subject of one issuer.
	RevokeSubject Kind = "subject"
	// RevokeWidget names every token of one widget (custom:wid).
	RevokeWidget Kind = "widget"
)

// Revocation is one deny-list entry, in force until Until (the latest
// expiry of the tokens it covers).
type Revocation struct {
	Kind   Kind
	Issuer string // RevokeSubject only: whose subject
	Value  string // the jti, subject or widget id
	Until  time.Time
}

// TokenRef is what of a verified token the deny-list is checked against;
// an empty field matches nothing.
type TokenRef struct {
	ID      string // jti
	Issuer  string
	Subject string
	Widget  string
}

// Revocations is the deny-list. Revoked answers from a local snapshot,
// without a round trip to the backend.
type Revocations interface {
	// Revoke adds r to the deny-list; a later Until extends an entry, an
	// earlier one leaves it as it is.
	Revoke(ctx context.Context, r Revocation) error
	// Revoked reports whether any entry covers t. On Redis it fails with
	// ErrUnavailable when the snapshot was last refreshed longer ago than
	// Options.StaleBound, so a revocation is delayed by at most that bound
	// and never missed.
	Revoked(ctx context.Context, t TokenRef) (bool, error)
}

// Health is the backend's state.
type Health struct {
	Backend string // "embedded" or "redis"
	// Healthy: the last operation on the backend succeeded.
	Healthy bool
	// LastError is the last failure, never a secret; empty when none.
	LastError   string
	LastErrorAt time.Time
	// Reconnects counts connections dialed after a failure (Redis).
	Reconnects uint64
	// CacheAnswers counts requirements answered from the local cache
	// while the backend failed (Redis).
	CacheAnswers uint64
	// RevocationsAt is when the revocation snapshot was last known
	// complete.
	RevocationsAt time.Time
}

// Open opens the backend opts names.
func Open(opts Options) (Store, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	switch opts.Backend {
	case BackendEmbedded:
		return openEmbedded(opts, true)
	case BackendRedis:
		return openRedis(opts, redisHooks{})
	}
	return nil, errors.New("state: unreachable backend") // setDefaults refuses others
}
