package state

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// MaxKeyBytes bounds every name the store is given (channel, owner field,
// replay key, rate-limit key, revoked value): a longer one is refused.
const MaxKeyBytes = 1024

// MaxPerSecond bounds Limit.PerSecond: a faster limit is not a limit.
const MaxPerSecond = 1e6

// joinKey joins parts unambiguously, each as its length, ':' and its bytes,
// so no choice of issuer, subject or widget can collide with another's.
func joinKey(parts ...string) string {
	var b strings.Builder
	n := 0
	for _, p := range parts {
		n += len(p) + 5
	}
	b.Grow(n)
	for _, p := range parts {
		b.WriteString(strconv.Itoa(len(p)))
		b.WriteByte(':')
		b.WriteString(p)
	}
	return b.String()
}

// splitKey undoes joinKey, reporting false for anything it did not write.
func splitKey(s string) ([]string, bool) {
	var parts []string
	for s != "" {
		i := strings.IndexByte(s, ':')
		if i <= 0 {
			return nil, false
		}
		n, err := strconv.Atoi(s[:i])
		if err != nil || n < 0 || n > len(s)-i-1 {
			return nil, false
		}
		parts = append(parts, s[i+1:i+1+n])
		s = s[i+1+n:]
	}
	return parts, true
}

func (o Owner) key() string { return joinKey(o.Issuer, o.Subject, o.Widget) }

// millis is the store's resolution: expiries are Unix milliseconds, as
// Redis keeps them. A record is live while now < its expiry.
func millis(t time.Time) int64 { return t.UnixMilli() }

func checkName(what, v string) error {
	switch {
	case v == "":
		return fmt.Errorf("%w: %s is empty", ErrInvalid, what)
	case len(v) > MaxKeyBytes:
		return fmt.Errorf("%w: %s is %d bytes, over %d", ErrInvalid, what, len(v), MaxKeyBytes)
	}
	return nil
}

func checkOwnership(channel string, o Owner, idle time.Duration) error {
	for _, f := range []struct{ what, v string }{
		{"channel", channel}, {"owner issuer", o.Issuer}, {"owner subject", o.Subject}, {"owner widget", o.Widget},
	} {
		if err := checkName(f.what, f.v); err != nil {
			return err
		}
	}
	if idle < time.Millisecond {
		return fmt.Errorf("%w: idle expiry %v is under 1ms", ErrInvalid, idle)
	}
	return nil
}

func checkClaim(channel string, o Owner, idle time.Duration, maxPerOwner int) error {
	if err := checkOwnership(channel, o, idle); err != nil {
		return err
	}
	if maxPerOwner < 1 {
		return fmt.Errorf("%w: channels per owner %d is under 1", ErrInvalid, maxPerOwner)
	}
	return nil
}

func checkRemember(key string, until, now time.Time) error {
	if err := checkName("replay key", key); err != nil {
		return err
	}
	if millis(until) <= millis(now) {
		return fmt.Errorf("%w: replay key expiry is not in the future", ErrInvalid)
	}
	return nil
}

func checkLimit(key string, l Limit) error {
	if err := checkName("rate-limit key", key); err != nil {
		return err
	}
	if !(l.PerSecond > 0) || l.PerSecond > MaxPerSecond || math.IsInf(l.PerSecond, 0) {
		return fmt.Errorf("%w: rate %v per second is not in (0, %g]", ErrInvalid, l.PerSecond, MaxPerSecond)
	}
	if l.Burst < 1 {
		return fmt.Errorf("%w: burst %d is under 1", ErrInvalid, l.Burst)
	}
	return nil
}

// revocationKey names r's entry: the same for every Until.
func revocationKey(k Kind, issuer, value string) string {
	return joinKey(string(k), issuer, value)
}

func checkRevocation(r Revocation, now time.Time) error {
	switch r.Kind {
	case RevokeSubject:
		if err := checkName("revoked subject's issuer", r.Issuer); err != nil {
			return err
		}
	case RevokeToken, RevokeWidget:
		if r.Issuer != "" {
			return fmt.Errorf("%w: a %s revocation names no issuer", ErrInvalid, r.Kind)
		}
	default:
		return fmt.Errorf("%w: revocation kind %q is none of %s, %s, %s", ErrInvalid, r.Kind, RevokeToken, RevokeSubject, RevokeWidget)
	}
	if err := checkName("revoked "+string(r.Kind), r.Value); err != nil {
		return err
	}
	if millis(r.Until) <= millis(now) {
		return fmt.Errorf("%w: revocation's end is not in the future", ErrInvalid)
	}
	return nil
}
