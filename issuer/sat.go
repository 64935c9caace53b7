package issuer

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"mime"
	"net/http"
	"net/mail"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/guestgate/guestgate/config"
	"github.com/guestgate/guestgate/strictjson"
	"github.com/guestgate/guestgate/tokens"
)

// The SAT API's request headers.
const (
	HeaderClientID  = "X-Frame-ClientId"
	HeaderTimestamp = "X-Frame-Timestamp"
	HeaderSignature = "X-Frame-Signature"
	HeaderNonce     = "X-Frame-Nonce"
)

// Bounds of the signed headers and the body fields.
const (
	maxNonce      = 128
	maxNameField  = 256
	maxEmail      = 254
	maxMetadata   = 2048
	maxTimestamp  = 12 // Unix seconds for the next thirty thousand years
	maxClientID   = 128
	signatureSize = sha256.Size
)

// unknownClientKey stands in for the secret of a client id nobody
// configured, so an unknown client costs the same HMAC as a known one and
// gets the same answer: client ids cannot be probed.
var unknownClientKey = bytes.Repeat([]byte{0}, 32)

// Sign returns X-Frame-Signature for a request: hex(HMAC-SHA256(secret,
// timestamp + clientID + nonce)), nonce empty when none is sent. The mint
// tools and tests sign with it; the API checks with the same bytes.
func Sign(secret []byte, timestamp, clientID, nonce string) string {
	return hex.EncodeToString(signature(secret, timestamp, clientID, nonce))
}

func signature(secret []byte, timestamp, clientID, nonce string) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(timestamp))
	m.Write([]byte(clientID))
	m.Write([]byte(nonce))
	return m.Sum(nil)
}

// secureAnonymous is the SAT API: a signed request from an administrator's
// integration mints a token of one of its account's providers.
func (is *Issuer) secureAnonymous(w http.ResponseWriter, r *http.Request, st *settings) {
	accountID, providerID := r.PathValue("account_id"), r.PathValue("provider_id")
	cl, sig, ts, code, msg := is.authenticate(r, st)
	if cl == nil {
		writeError(w, http.StatusUnauthorized, code, "", msg)
		return
	}
	// The per-client limit comes before the replay memory: what the limit
	// lets through in a window is what the memory is sized for.
	if !is.allow(w, r, st.perClient, "sat:"+cl.id) {
		return
	}
	// Remembered in the store (shared by every replica on Redis) until the
	// timestamp leaves the window: a replay after that is refused as
	// stale. The key is the decoded signature, so the same signature in
	// another hex letter case is still a replay. What the memory holds per
	// client is bounded by the per-client limit: at most burst +
	// per_second × the window.
	fresh, err := is.store.Remember(r.Context(), "sat:"+cl.id+":"+hex.EncodeToString(sig[:]), ts.Add(config.SignatureWindow+time.Second))
	if err != nil {
		is.stateUnavailable(w, "replay memory", err)
		return
	}
	if !fresh {
		writeError(w, http.StatusUnauthorized, "signature_replayed", "", "this signature was used before: sign each request anew (X-Frame-Nonce allows many per second)")
		return
	}
	// Authorisation: an administrator over the account, minting from a
	// provider of that same account.
	if cl.role != config.RoleAdministrator {
		writeError(w, http.StatusForbidden, "role_not_administrator", "", "this credential's role may not mint tokens: an administrator's integration is needed")
		return
	}
	if !st.cfg.Covers(cl.scope, accountID) {
		writeError(w, http.StatusForbidden, "account_out_of_scope", "", "the account is outside this integration's scope")
		return
	}
	p, ok := st.providers[providerID]
	if !ok {
		writeError(w, http.StatusNotFound, "provider_unknown", "", "no such provider")
		return
	}
	if p.Account != accountID {
		writeError(w, http.StatusForbidden, "provider_not_in_account", "", "the provider belongs to another account")
		return
	}
	body, field, err := readSATBody(r)
	if err != nil {
		status, code := http.StatusBadRequest, "field_invalid"
		switch {
		case tooLarge(err):
			status, code, field = http.StatusRequestEntityTooLarge, "body_too_large", "body"
			err = fmt.Errorf("the body is larger than %d bytes", st.cfg.MaxBodyBytes)
		case errors.Is(err, errMediaType):
			status, code, field = http.StatusUnsupportedMediaType, "unsupported_media_type", "Content-Type"
		}
		writeError(w, status, code, field, err.Error())
		return
	}
	email := body.Email
	if email == "" && body.EmailDomain != "" {
		email = "anonymous-" + strings.ToLower(rand.Text()) + "@" + body.EmailDomain
	}
	issued, err := st.signer.MintSAT(tokens.SATClaims{
		AccountID: accountID, ProviderID: p.ID, Role: p.Role, Scope: p.Scope, TTL: p.Duration.D(),
		FirstName: body.FirstName, LastName: body.LastName, Email: email, Metadata: body.Metadata,
	})
	if err != nil {
		// A body field the token cannot carry as it is (metadata larger
		// once encoded) is the client's: field_invalid, naming it.
		is.mintRefused(w, err, "field_invalid", "secure anonymous token", "client_id", cl.id, "provider", p.ID)
		return
	}
	is.logger.Info("minted", "kind", tokens.KindSecureAnonymous, "client_id", cl.id, "account", accountID, "provider", p.ID, "subject", issued.Subject)
	// The body is the JWT as a JSON string: what the API's documented client
	// prints with r.json().
	writeJSON(w, http.StatusOK, issued.Token)
}

// authenticate checks the signed headers, the signature in constant time.
// It returns the integration, the decoded signature and its timestamp, or a
// stable code and a message.
func (is *Issuer) authenticate(r *http.Request, st *settings) (cl *client, sig [signatureSize]byte, ts time.Time, code, msg string) {
	fail := func(code, msg string) (*client, [signatureSize]byte, time.Time, string, string) {
		return nil, sig, ts, code, msg
	}
	var vals [4]string
	for i, h := range [...]string{HeaderClientID, HeaderTimestamp, HeaderSignature, HeaderNonce} {
		vs := r.Header.Values(h)
		switch {
		case len(vs) > 1:
			return fail("signature_invalid", h+" is sent more than once")
		case len(vs) == 0 && h != HeaderNonce:
			return fail("signature_missing", h+" is required")
		case len(vs) == 1:
			vals[i] = vs[0]
		}
	}
	clientID, tsText, sigHex, nonce := vals[0], vals[1], vals[2], vals[3]
	if clientID == "" || len(clientID) > maxClientID {
		return fail("signature_invalid", HeaderClientID+" must be 1 to 128 characters")
	}
	if len(tsText) == 0 || len(tsText) > maxTimestamp || strings.Trim(tsText, "0123456789") != "" {
		return fail("timestamp_invalid", HeaderTimestamp+" must be Unix seconds")
	}
	if _, has := r.Header[http.CanonicalHeaderKey(HeaderNonce)]; has && !validNonce(nonce) {
		return fail("nonce_invalid", HeaderNonce+" must be 1 to 128 letters, digits and \"-._~\"")
	}
	raw, err := hex.DecodeString(sigHex)
	if err != nil || len(raw) != signatureSize {
		return fail("signature_invalid", HeaderSignature+" must be the hex of an HMAC-SHA256")
	}
	cl, known := st.clients[clientID]
	key := unknownClientKey
	if known {
		key = cl.secret
	}
	want := signature(key, tsText, clientID, nonce)
	if !hmac.Equal(raw, want) || !known {
		return fail("signature_invalid", "the signature does not match (client id, secret, timestamp, nonce)")
	}
	sec, _ := strconv.ParseInt(tsText, 10, 64)
	t, now := time.Unix(sec, 0), is.now()
	if t.Before(now.Add(-config.SignatureWindow)) || t.After(now.Add(config.SignatureWindow)) {
		return fail("timestamp_out_of_window", fmt.Sprintf("%s is more than %s from the server's clock", HeaderTimestamp, config.SignatureWindow))
	}
	copy(sig[:], raw)
	return cl, sig, t, "", ""
}

func validNonce(n string) bool {
	if n == "" || len(n) > maxNonce {
		return false
	}
	for i := 0; i < len(n); i++ {
		c := n[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || strings.IndexByte("-._~", c) >= 0) {
			return false
		}
	}
	return true
}

// satBody is the SAT API's optional body.
type satBody struct {
	FirstName, LastName, Email, EmailDomain string
	Metadata                                map[string]any
}

var errMediaType = errors.New("the body must be application/json or application/x-www-form-urlencoded")

// satFields are the body's fields; anything else is refused, by name.
var satFields = map[string]bool{"first_name": true, "last_name": true, "email": true, "email_domain": true, "metadata": true}

// readSATBody reads the body as JSON or as a form and checks every field.
// On error it names the field at fault.
func readSATBody(r *http.Request) (satBody, string, error) {
	var b satBody
	data, err := io.ReadAll(r.Body)
	if err != nil {
		return b, "body", err
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return b, "", nil
	}
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil {
		return b, "Content-Type", errMediaType
	}
	strs := map[string]*string{"first_name": &b.FirstName, "last_name": &b.LastName, "email": &b.Email, "email_domain": &b.EmailDomain}
	switch mt {
	case "application/json":
		fields, field, err := jsonFields(data)
		if err != nil {
			return b, field, err
		}
		// In name order: the first bad field named is the same on every
		// request.
		for _, name := range slices.Sorted(maps.Keys(fields)) {
			v := fields[name]
			if !satFields[name] {
				return b, name, fmt.Errorf("unknown field %q", name)
			}
			if name == "metadata" {
				if err := decodeMetadata(v, &b.Metadata); err != nil {
					return b, name, err
				}
				continue
			}
			if err := json.Unmarshal(v, strs[name]); err != nil {
				return b, name, fmt.Errorf("%s must be a string", name)
			}
		}
	case "application/x-www-form-urlencoded":
		form, err := url.ParseQuery(string(data))
		if err != nil {
			return b, "body", errors.New("the body is not a URL-encoded form")
		}
		for name, vs := range form {
			if !satFields[name] {
				return b, name, fmt.Errorf("unknown field %q", name)
			}
			if len(vs) != 1 {
				return b, name, fmt.Errorf("%s is sent more than once", name)
			}
			if name == "metadata" {
				if err := decodeMetadata([]byte(vs[0]), &b.Metadata); err != nil {
					return b, name, err
				}
				continue
			}
			*strs[name] = vs[0]
		}
	default:
		return b, "Content-Type", errMediaType
	}
	field, err := checkSATBody(&b)
	return b, field, err
}

// jsonFields splits the body into its fields. strictjson reads it first,
// metadata and all: one object, in UTF-8, no field or member named twice
// at any depth (decoders resolve a repeat differently), nothing after it.
// On error it names the field at fault: the field whose value is not
// UTF-8, else the body.
func jsonFields(data []byte) (map[string]json.RawMessage, string, error) {
	var fields map[string]json.RawMessage
	if _, err := strictjson.DecodeObject(data); err != nil {
		// A value's bytes stay as they came in a RawMessage.
		if errors.Is(err, strictjson.ErrInvalidUTF8) && json.Unmarshal(data, &fields) == nil {
			for _, name := range slices.Sorted(maps.Keys(fields)) {
				if utf8.ValidString(name) && !utf8.Valid(fields[name]) {
					return nil, name, fmt.Errorf("%s is not UTF-8", name)
				}
			}
		}
		return nil, "body", fmt.Errorf("the body: %w", err)
	}
	if err := json.Unmarshal(data, &fields); err != nil {
		return nil, "body", errors.New("the body is not a JSON object")
	}
	return fields, "", nil
}

// decodeMetadata reads the metadata field, from a JSON body or a form: a
// strict JSON object of at most maxMetadata bytes as sent.
func decodeMetadata(v []byte, out *map[string]any) error {
	if len(v) > maxMetadata {
		return fmt.Errorf("metadata is larger than %d bytes", maxMetadata)
	}
	m, err := strictjson.DecodeObject(v)
	switch {
	case errors.Is(err, strictjson.ErrNotObject):
		return errors.New("metadata must be a JSON object")
	case err != nil:
		return fmt.Errorf("metadata must be a JSON object: %w", err)
	}
	*out = m
	return nil
}

// checkSATBody validates the fields and returns the name of the first bad
// one.
func checkSATBody(b *satBody) (string, error) {
	for _, f := range [...]struct{ name, v string }{{"first_name", b.FirstName}, {"last_name", b.LastName}} {
		if !plainText(f.v, maxNameField) {
			return f.name, fmt.Errorf("%s must be at most %d bytes of text without control characters", f.name, maxNameField)
		}
	}
	if b.EmailDomain != "" {
		b.EmailDomain = strings.ToLower(b.EmailDomain)
		if !domainName(b.EmailDomain) {
			return "email_domain", errors.New("email_domain is not a domain name")
		}
	}
	if b.Email != "" {
		a, err := mail.ParseAddress(b.Email)
		at := strings.LastIndexByte(b.Email, '@')
		if err != nil || a.Name != "" || a.Address != b.Email || len(b.Email) > maxEmail || at <= 0 ||
			!plainText(b.Email, maxEmail) || strings.ContainsAny(b.Email, " <>,;\"") || !domainName(strings.ToLower(b.Email[at+1:])) {
			return "email", errors.New("email is not an e-mail address (local@domain)")
		}
		if b.EmailDomain != "" && strings.ToLower(b.Email[at+1:]) != b.EmailDomain {
			return "email", errors.New("email is not in email_domain")
		}
	}
	return "", nil
}

func plainText(s string, maxLen int) bool {
	if len(s) > maxLen || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == '\u2028' || r == '\u2029' {
			return false
		}
	}
	return true
}

// domainName takes a lower-case DNS name of at least two labels.
func domainName(d string) bool {
	if len(d) > 253 || !strings.Contains(d, ".") {
		return false
	}
	for _, label := range strings.Split(d, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}
