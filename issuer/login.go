package issuer

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/guestgate/guestgate/state"
	"github.com/guestgate/guestgate/tokens"
)

// loginAnswer is the login exchange's answer: the access token and its
// lifetime in seconds, as a string. There is no refresh token: a guest logs
// in again with a fresh guest token.
type loginAnswer struct {
	Token     string `json:"token"`
	ExpiresIn string `json:"expiresIn"`
}

// login exchanges a partner's guest token (Authorization: Bearer) for an
// access token valid 6 h whatever the guest token's exp. The access token
// carries the generation of the guest issuer's secret, so regenerating the
// secret refuses both the old guest tokens (their signature no longer
// verifies) and the access tokens minted from them.
func (is *Issuer) login(w http.ResponseWriter, r *http.Request, st *settings) {
	if st.verifier == nil {
		writeError(w, http.StatusServiceUnavailable, "verifier_not_configured", "", "no trusted issuers are configured")
		return
	}
	raw, ok := bearer(r)
	if !ok {
		w.Header().Set("WWW-Authenticate", "Bearer")
		writeError(w, http.StatusUnauthorized, "missing_token", "", "send the guest token as Authorization: Bearer")
		return
	}
	// Only a guest token logs in: an access token cannot renew itself.
	tok, err := st.verifier.VerifyKind(r.Context(), raw, tokens.KindGuest)
	if err != nil {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		writeError(w, http.StatusUnauthorized, "invalid_token", "", "the guest token was refused: "+tokens.CodeOf(err))
		return
	}
	if !is.allow(w, r, st.perClient, "guest:"+tok.Issuer+"\x00"+tok.Subject) {
		return
	}
	// A guest token whose jti or subject is on the deny-list logs in no
	// more (the access tokens it minted are refused by the check).
	revoked, err := is.store.Revoked(r.Context(), state.TokenRef{ID: tok.ID, Issuer: tok.Issuer, Subject: tok.Subject})
	if err != nil {
		is.stateUnavailable(w, "revocations", err)
		return
	}
	if revoked {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		writeError(w, http.StatusUnauthorized, "invalid_token", "", "the guest token was refused: "+tokens.CodeRevoked)
		return
	}
	gen, ok := st.verifier.GuestGeneration(tok.Issuer)
	if !ok {
		writeError(w, http.StatusUnauthorized, "invalid_token", "", "the guest token was refused: untrusted_issuer")
		return
	}
	issued, err := st.signer.MintAccess(tokens.AccessClaims{GuestIssuer: tok.Issuer, GuestSubject: tok.Subject, Name: tok.Name, Generation: gen})
	if err != nil {
		// A guest token's name or subject the access token cannot carry
		// is the partner's (a 400 naming the claim), not ours.
		is.mintRefused(w, err, "claim_invalid", "access token", "guest_issuer", tok.Issuer)
		return
	}
	is.logger.Info("minted", "kind", tokens.KindAccess, "guest_issuer", tok.Issuer, "subject", issued.Subject)
	secs := int64(issued.ExpiresAt.Sub(is.now()).Seconds()) // rounds down: 21599 for a fresh 6 h token
	writeJSON(w, http.StatusOK, loginAnswer{Token: issued.Token, ExpiresIn: strconv.FormatInt(max(secs, 0), 10)})
}

// bearer returns the token of "Authorization: Bearer <token>", the scheme
// in any letter case (RFC 9110 §11.1).
func bearer(r *http.Request) (string, bool) {
	vs := r.Header.Values("Authorization")
	if len(vs) != 1 {
		return "", false
	}
	scheme, tok, ok := strings.Cut(vs[0], " ")
	// Spaces and tabs only (RFC 9110 §5.6.3): any other white space is in
	// the token, which then does not verify (malformed).
	tok = strings.Trim(tok, " \t")
	if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" {
		return "", false
	}
	return tok, true
}
