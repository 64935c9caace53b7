package ext_authz

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/guestgate/guestgate/state"
	"github.com/guestgate/guestgate/strictjson"
)

// RevocationsPath is the admin route that adds to the deny-list.
const RevocationsPath = "/v1/revocations"

// maxRevocationBody bounds the route's body.
const maxRevocationBody = 8 << 10

// RevocationRoute configures RevocationHandler.
type RevocationRoute struct {
	// Store is the deny-list written to (the state store: on Redis every
	// replica reads it within its stale bound).
	Store state.Revocations
	// Token returns the bearer token the route takes (admin.revocation_token,
	// read per request so a config reload changes it). Empty: the route is
	// off (404).
	Token func() string
	// Lifetime says how long the tokens a revocation covers may still be
	// valid (wiring.TokenLifetimes.For); false: no trusted issuer's tokens
	// are covered, and the revocation is refused.
	Lifetime func(kind state.Kind, issuer string) (time.Duration, bool)
	Logger   *slog.Logger
	// Now is the clock of the entries' ends. Nil: time.Now.
	Now func() time.Time
}

// RevocationRequest is the route's body: exactly one of JTI, Subject (with
// Issuer) or Widget.
type RevocationRequest struct {
	JTI     string `json:"jti,omitempty"`
	Subject string `json:"subject,omitempty"`
	Issuer  string `json:"issuer,omitempty"`
	Widget  string `json:"widget,omitempty"`
}

// RevocationAnswer is what the route answers on success.
type RevocationAnswer struct {
	Kind   string    `json:"kind"`
	Issuer string    `json:"issuer,omitempty"`
	Value  string    `json:"value"`
	Until  time.Time `json:"until"`
}

// RevocationHandler serves POST /v1/revocations: Authorization: Bearer
// <admin.revocation_token>, compared in constant time, and a JSON body
// naming what to revoke. The entry ends when the last token it covers would
// have expired. It answers 200 with the entry, 400 naming the field at
// fault, 401 without the right token, 404 when off, 503 state_unavailable
// when the store did not take it.
func RevocationHandler(o RevocationRoute) http.Handler {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		want := o.Token()
		if want == "" {
			revocationError(w, http.StatusNotFound, "revocations_disabled", "", "the revocation route is off (admin.revocation_token_file)")
			return
		}
		if !bearerMatches(r, want) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="guestgate-admin"`)
			revocationError(w, http.StatusUnauthorized, "unauthorized", "", "send the admin revocation token as Authorization: Bearer")
			return
		}
		req, field, err := readRevocation(w, r)
		if err != nil {
			status := http.StatusBadRequest
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				status = http.StatusRequestEntityTooLarge
			}
			revocationError(w, status, "bad_request", field, err.Error())
			return
		}
		rev, field, err := req.revocation()
		if err != nil {
			revocationError(w, http.StatusBadRequest, "bad_request", field, err.Error())
			return
		}
		life, ok := o.Lifetime(rev.Kind, rev.Issuer)
		if !ok {
			field := "issuer"
			if rev.Kind == state.RevokeWidget {
				field = "widget"
			}
			revocationError(w, http.StatusBadRequest, "bad_request", field, "no trusted issuer's tokens are covered: nothing to revoke")
			return
		}
		rev.Until = o.Now().Add(life).Truncate(time.Second).Add(time.Second)
		if err := o.Store.Revoke(r.Context(), rev); err != nil {
			if errors.Is(err, state.ErrInvalid) {
				revocationError(w, http.StatusBadRequest, "bad_request", string(rev.Kind), err.Error())
				return
			}
			o.Logger.Warn("revocation not stored", "kind", rev.Kind, "error", err)
			w.Header().Set("Retry-After", "1")
			revocationError(w, http.StatusServiceUnavailable, ReasonStateUnavailable, "", "the state store is unavailable; retry")
			return
		}
		// The value is an id, never a credential: logged for the audit trail.
		o.Logger.Info("revoked", "kind", rev.Kind, "issuer", rev.Issuer, "value", rev.Value, "until", rev.Until)
		writeRevocationJSON(w, http.StatusOK, RevocationAnswer{Kind: string(rev.Kind), Issuer: rev.Issuer, Value: rev.Value, Until: rev.Until.UTC()})
	})
}

// bearerMatches compares the request's bearer token with want in constant
// time (of digests, so the length does not show either).
func bearerMatches(r *http.Request, want string) bool {
	vs := r.Header.Values("Authorization")
	if len(vs) != 1 {
		return false
	}
	scheme, got, ok := strings.Cut(vs[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	g, w := sha256.Sum256([]byte(strings.Trim(got, " \t"))), sha256.Sum256([]byte(want))
	return subtle.ConstantTimeCompare(g[:], w[:]) == 1
}

func readRevocation(w http.ResponseWriter, r *http.Request) (RevocationRequest, string, error) {
	var req RevocationRequest
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxRevocationBody))
	if err != nil {
		return req, "body", err
	}
	obj, err := strictjson.DecodeObject(data)
	if err != nil {
		return req, "body", errors.New("the body must be one JSON object: " + err.Error())
	}
	fields := map[string]*string{"jti": &req.JTI, "subject": &req.Subject, "issuer": &req.Issuer, "widget": &req.Widget}
	for _, name := range slices.Sorted(maps.Keys(obj)) {
		v := obj[name]
		dst, known := fields[name]
		if !known {
			return req, name, errors.New("unknown field " + name + " (jti, subject, issuer, widget)")
		}
		s, ok := v.(string)
		if !ok {
			return req, name, errors.New(name + " must be a string")
		}
		*dst = s
	}
	return req, "", nil
}

// revocation checks the request's shape: one kind, its value, an issuer
// with a subject and only then.
func (q RevocationRequest) revocation() (state.Revocation, string, error) {
	var set []string
	for _, f := range []struct{ name, v string }{{"jti", q.JTI}, {"subject", q.Subject}, {"widget", q.Widget}} {
		if f.v != "" {
			set = append(set, f.name)
		}
	}
	if len(set) != 1 {
		return state.Revocation{}, "body", errors.New("name exactly one of jti, subject (with issuer) or widget")
	}
	switch {
	case q.Subject != "" && q.Issuer == "":
		return state.Revocation{}, "issuer", errors.New("a subject is revoked per issuer: issuer is required")
	case q.Subject == "" && q.Issuer != "":
		return state.Revocation{}, "issuer", errors.New("issuer goes with subject only")
	case q.JTI != "":
		return state.Revocation{Kind: state.RevokeToken, Value: q.JTI}, "", nil
	case q.Widget != "":
		return state.Revocation{Kind: state.RevokeWidget, Value: q.Widget}, "", nil
	}
	return state.Revocation{Kind: state.RevokeSubject, Issuer: q.Issuer, Value: q.Subject}, "", nil
}

type revocationErr struct {
	Error   string `json:"error"`
	Field   string `json:"field,omitempty"`
	Message string `json:"message"`
}

func revocationError(w http.ResponseWriter, status int, code, field, msg string) {
	writeRevocationJSON(w, status, revocationErr{Error: code, Field: field, Message: msg})
}

func writeRevocationJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
