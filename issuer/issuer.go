// Package issuer is guestgate's minting side: the HTTP routes that hand out
// the credentials the sidecar later checks, signed with tokens' Signer.
//
//	POST /v1/accounts/{account_id}/secure-anonymous/{provider_id}/tokens  the SAT API (signed requests)
//	POST /v1/jwt/login                                                    guest token → 6 h access token
//	POST /v1/anonymous/widgets/{widget_id}/token                          a widget's anonymous session
//	POST /v1/anonymous/public-chats/{channel_id}/token                    a link into a public chat
//	GET  /.well-known/jwks.json                                           the public keys of every minted kind
//
// Every minting route is rate-limited per client address and per client,
// bounds its body, and is off unless the config turns it on. Whether a
// widget may start anonymous sessions and whether a channel is public is
// read from the policy's own data (registry/widgets.json and
// registry/channels.json, as the engine loaded them), so the issuer and the
// policy never disagree, and a reload of the data changes both at once.
package issuer

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/guestgate/guestgate/config"
	"github.com/guestgate/guestgate/state"
	"github.com/guestgate/guestgate/tokens"
)

// Settings is what a config reload replaces: the issuer section, the signer
// and the verifier built from the same config.
type Settings struct {
	Config config.Issuer
	// Signer mints. Nil: the minting routes answer 503.
	Signer *tokens.Signer
	// Verifier checks guest tokens at the login exchange. Nil: the login
	// route answers 503.
	Verifier *tokens.Verifier
}

// Registry reads the policy's data document; *engine.Engine is one. Data
// returns data.<path...> of the serving policy revision.
type Registry interface {
	Data(path ...string) (any, bool)
}

// Observer is told the outcome of every request on a minting route
// (metrics hang here). route is one of the Route* names; outcome is "ok" or
// the stable error code of the refusal: both a small, fixed set.
type Observer interface {
	Minted(route, outcome string)
}

// The minting routes' names, as an Observer sees them.
const (
	RouteSecureAnonymous = "secure_anonymous"
	RouteGuestLogin      = "guest_login"
	RouteWidgetSession   = "widget_session"
	RoutePublicChat      = "public_chat_session"
)

// State is what the issuer keeps in the state store: the SAT replay
// memory, the rate limits and the deny-list the login exchange checks. On
// Redis every replica shares them.
type State interface {
	state.ReplayMemory
	state.RateLimiter
	state.Revocations
}

// Options are what does not change on a reload.
type Options struct {
	// State holds the replay memory, the rate limits and the revocations.
	// Required: the cmd passes the store serve opened (embedded by
	// default). Any error of it refuses the request, 503
	// state_unavailable.
	State State
	// Observer, when set, is told every minting outcome.
	Observer Observer
	// Registry is where widgets and channels are looked up. Nil: anonymous
	// sessions answer 503.
	Registry Registry
	// Logger receives one line per minted token (never the token). Nil:
	// slog.Default().
	Logger *slog.Logger
	// Now is the clock of the signature timestamps and of the replay
	// memory's expiries (the store's own clock decides the rate limits).
	// Nil: time.Now.
	Now func() time.Time
}

// Issuer serves the minting routes. It is safe for concurrent use; Update
// swaps its settings, and the replay memory and rate limits, in the store,
// outlive it.
type Issuer struct {
	registry Registry
	observer Observer
	logger   *slog.Logger
	now      func() time.Time
	store    State

	mu    sync.Mutex // serialises Update
	state atomic.Pointer[settings]
}

// settings is one generation of settings, read whole by each request.
type settings struct {
	cfg        config.Issuer
	signer     *tokens.Signer
	verifier   *tokens.Verifier
	clients    map[string]*client
	providers  map[string]config.Provider
	proxies    []netip.Prefix
	perClient  state.Limit
	perAddress state.Limit
}

// client is an API integration of the SAT API.
type client struct {
	id     string
	secret []byte // the HMAC key
	role   string
	scope  string
}

// New builds an Issuer from settings that config validation accepted.
func New(s Settings, o Options) (*Issuer, error) {
	if o.State == nil {
		return nil, errors.New("issuer: no state store (Options.State)")
	}
	is := &Issuer{registry: o.Registry, observer: o.Observer, logger: o.Logger, now: o.Now, store: o.State}
	if is.logger == nil {
		is.logger = slog.Default()
	}
	if is.now == nil {
		is.now = time.Now
	}
	if err := is.Update(s); err != nil {
		return nil, err
	}
	return is, nil
}

// Update swaps in new settings. The replay memory and the buckets are the
// store's: a reload never makes a used signature usable again, and a bucket
// refills only when its rate or burst changed.
func (is *Issuer) Update(s Settings) error {
	is.mu.Lock()
	defer is.mu.Unlock()
	st := &settings{
		cfg:       s.Config,
		signer:    s.Signer,
		verifier:  s.Verifier,
		clients:   make(map[string]*client, len(s.Config.Integrations)),
		providers: make(map[string]config.Provider, len(s.Config.Providers)),
	}
	for i, in := range s.Config.Integrations {
		if len(in.Secret) < config.MinClientSecretLen {
			return fmt.Errorf("issuer.integrations[%d]: no client secret of at least %d characters", i, config.MinClientSecretLen)
		}
		st.clients[in.ClientID] = &client{id: in.ClientID, secret: []byte(in.Secret), role: in.Role, scope: in.Scope}
	}
	for _, p := range s.Config.Providers {
		st.providers[p.ID] = p
	}
	for i, p := range s.Config.TrustedProxies {
		pfx, err := config.ParseProxy(p)
		if err != nil {
			return fmt.Errorf("issuer.trusted_proxies[%d]: %v", i, err)
		}
		st.proxies = append(st.proxies, pfx)
	}
	rl := s.Config.RateLimits
	st.perClient = state.Limit{PerSecond: rl.PerClient.PerSecond, Burst: rl.PerClient.Burst}
	st.perAddress = state.Limit{PerSecond: rl.PerAddress.PerSecond, Burst: rl.PerAddress.Burst}
	is.state.Store(st)
	return nil
}

// Register mounts the issuer's routes on mux. The cmd mounts them on the
// public listener and again on the admin listener, for the playground.
func (is *Issuer) Register(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/accounts/{account_id}/secure-anonymous/{provider_id}/tokens", is.minting(RouteSecureAnonymous, is.secureAnonymous))
	mux.HandleFunc("POST /v1/jwt/login", is.minting(RouteGuestLogin, is.login))
	mux.HandleFunc("POST /v1/anonymous/widgets/{widget_id}/token", is.minting(RouteWidgetSession, is.widgetSession))
	mux.HandleFunc("POST /v1/anonymous/public-chats/{channel_id}/token", is.minting(RoutePublicChat, is.publicChatSession))
	mux.HandleFunc("GET /.well-known/jwks.json", is.jwks)
}

// minting wraps a minting route: off unless enabled, limited per address,
// body bounded, never cached, its outcome told to the observer.
func (is *Issuer) minting(route string, h func(w http.ResponseWriter, r *http.Request, st *settings)) http.HandlerFunc {
	return func(rw http.ResponseWriter, r *http.Request) {
		w := &outcomeWriter{ResponseWriter: rw, outcome: "ok"}
		if is.observer != nil {
			defer func() {
				// A handler that panics minted nothing: count it as such,
				// then let net/http recover it as it would have.
				if p := recover(); p != nil {
					is.observer.Minted(route, "internal_error")
					panic(p)
				}
				is.observer.Minted(route, w.outcome)
			}()
		}
		st := is.state.Load()
		w.Header().Set("Cache-Control", "no-store")
		if !st.cfg.Enabled {
			writeError(w, http.StatusNotFound, "issuer_disabled", "", "the issuer routes are turned off (issuer.enabled)")
			return
		}
		if !is.allow(w, r, st.perAddress, "addr:"+addressKey(st.clientAddr(r))) {
			return
		}
		if st.signer == nil {
			writeError(w, http.StatusServiceUnavailable, "minting_not_configured", "", "no minting keys are configured")
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, int64(st.cfg.MaxBodyBytes))
		h(w, r, st)
	}
}

// allow takes one request from key's bucket in the store, or answers 429
// with Retry-After (or 503 when the store cannot answer) and returns false.
func (is *Issuer) allow(w http.ResponseWriter, r *http.Request, l state.Limit, key string) bool {
	if len(key) > maxBucketKey {
		// A client's long name (a guest's sub) is its bucket by digest:
		// the store bounds its keys, and a long name is not an outage.
		sum := sha256.Sum256([]byte(key))
		key = fmt.Sprintf("sha256:%x", sum)
	}
	ok, wait, err := is.store.Allow(r.Context(), "issuer:"+key, l)
	if err != nil {
		is.stateUnavailable(w, "rate limit", err)
		return false
	}
	if ok {
		return true
	}
	secs := int64((wait + time.Second - 1) / time.Second)
	w.Header().Set("Retry-After", fmt.Sprint(max(secs, 1)))
	writeError(w, http.StatusTooManyRequests, "rate_limited", "", "too many requests; retry after the Retry-After seconds")
	return false
}

// maxBucketKey is the longest bucket name kept as it is.
const maxBucketKey = 256

// stateUnavailable answers a request the state store could not serve:
// 503 state_unavailable, which the observer counts like every outcome.
// Nothing is minted without the replay memory and the limits.
func (is *Issuer) stateUnavailable(w http.ResponseWriter, what string, err error) {
	is.logger.Warn("state store unavailable; request refused", "step", what, "error", err)
	w.Header().Set("Retry-After", "1")
	writeError(w, http.StatusServiceUnavailable, ReasonStateUnavailable, "", "the state store is unavailable; retry shortly")
}

// ReasonStateUnavailable is the code of a request refused because the
// state store could not answer (ext_authz answers the same reason).
const ReasonStateUnavailable = "state_unavailable"

// jwks publishes the public keys of every minted kind. Caches may keep it
// five minutes: a new key is listed before it signs (rotation lists the new
// key second, then first), and the ETag lets a cache revalidate cheaply.
func (is *Issuer) jwks(w http.ResponseWriter, r *http.Request) {
	st := is.state.Load()
	if st.signer == nil {
		writeError(w, http.StatusNotFound, "minting_not_configured", "", "no minting keys are configured")
		return
	}
	body := st.signer.JWKS()
	sum := sha256.Sum256(body)
	etag := fmt.Sprintf(`"%x"`, sum[:16])
	w.Header().Set("Content-Type", "application/jwk-set+json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	w.Header().Set("ETag", etag)
	if r.Header.Get("If-None-Match") == etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	_, _ = w.Write(body)
}

// apiError is every refusal's body: a stable code, the field at fault when
// there is one, and a sentence for people. It never holds a secret or a
// token.
type apiError struct {
	Error   string `json:"error"`
	Field   string `json:"field,omitempty"`
	Message string `json:"message"`
}

// outcomeWriter remembers the error code a minting route answered with.
type outcomeWriter struct {
	http.ResponseWriter
	outcome string
}

func writeError(w http.ResponseWriter, status int, code, field, msg string) {
	if ow, ok := w.(*outcomeWriter); ok {
		ow.outcome = code
	}
	writeJSON(w, status, apiError{Error: code, Field: field, Message: msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// mintRefused answers a mint the signer refused. A claim value the client
// gave that the signer will not sign (tokens.ClaimError: a name with a
// control character, a subject too long) is the client's error: status 400
// with code, naming the claim, and an Info line. Anything else is the
// issuer's own failure: an Error line and 500 mint_failed.
func (is *Issuer) mintRefused(w http.ResponseWriter, err error, code, what string, attrs ...any) {
	var ce *tokens.ClaimError
	if errors.As(err, &ce) {
		is.logger.Info(what+" not minted: the client's "+ce.Claim+" was refused", attrs...)
		writeError(w, http.StatusBadRequest, code, ce.Claim, ce.Error())
		return
	}
	is.logger.Error(what+" not minted", append(attrs, "error", err)...)
	writeError(w, http.StatusInternalServerError, "mint_failed", "", "the token could not be minted")
}

// tooLarge says whether err is http.MaxBytesReader's refusal.
func tooLarge(err error) bool {
	var mbe *http.MaxBytesError
	return errors.As(err, &mbe)
}
