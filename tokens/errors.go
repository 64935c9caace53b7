package tokens

import (
	"errors"
	"fmt"
)

// Stable error codes. They reach the policy as input.token_error, the
// decision log and the metrics, so they never change meaning.
const (
	CodeMissing         = "missing"          // no credential where one was looked for
	CodeMalformed       = "malformed"        // not three strict base64url segments of JSON objects
	CodeTooLarge        = "too_large"        // over the configured size bound
	CodeUntrustedIssuer = "untrusted_issuer" // "iss" absent or not a configured issuer
	CodeBadAlgorithm    = "bad_algorithm"    // header "alg" not on the issuer's allow-list
	CodeBadHeader       = "bad_header"       // jku, x5u, jwk, x5c, crit, cty, enc or a wrong typ
	CodeBadSignature    = "bad_signature"    // signature does not verify
	CodeUnknownKey      = "unknown_key"      // no key with the header's kid
	CodeKeysUnavailable = "keys_unavailable" // the issuer's keys could not be had (fail closed)
	CodeExpired         = "expired"          // exp in the past beyond the leeway
	CodeNotYetValid     = "not_yet_valid"    // nbf or iat in the future beyond the leeway
	CodeBadAudience     = "bad_audience"     // aud absent or not one of the issuer's audiences
	CodeBadClaims       = "bad_claims"       // a claim the kind requires is absent or wrong
	CodeRevoked         = "revoked"          // an access token whose guest secret was rotated
	CodeWrongKind       = "wrong_kind"       // a valid token of a kind this route does not take
)

// Error is a verification failure. Code is one of the stable codes above;
// Detail is a short human explanation. Neither ever holds the token, a
// secret or key material.
type Error struct {
	Code   string
	Detail string
}

func (e *Error) Error() string {
	if e.Detail == "" {
		return "token " + e.Code
	}
	return "token " + e.Code + ": " + e.Detail
}

// Is lets errors.Is match on the code alone: errors.Is(err, &Error{Code: CodeExpired}).
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

func errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Detail: fmt.Sprintf(format, args...)}
}

// CodeOf returns the stable code of err, or CodeMalformed for an error that
// is not an *Error (fail closed: an unexpected failure is never an allow).
func CodeOf(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return CodeMalformed
}

// ClaimError is a mint refused for a claim value its caller gave: a name
// that is not text, a subject or metadata too long. It is the caller's
// input, not a fault of the signer's, so a route answers it with a 4xx
// naming Claim. Its message never holds the value.
type ClaimError struct {
	Claim string // the claim refused, e.g. "name"
	msg   string
}

func (e *ClaimError) Error() string { return e.msg }

func claimErrorf(claim, format string, args ...any) *ClaimError {
	return &ClaimError{Claim: claim, msg: fmt.Sprintf(format, args...)}
}
