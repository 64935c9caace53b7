package main

import (
	"crypto/rand"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/guestgate/guestgate/internal/testsupport"
)

// TestGuestSecretRotationTakesEffectWithoutRestart rewrites the guest
// issuer's secret file under a running sidecar: guest tokens signed with
// the old secret are refused and those signed with the new one accepted,
// access tokens minted from the old secret's generation are revoked, all
// without a restart. A bad secret written afterwards is refused, shown in
// /readyz and logged, and the last good config keeps serving.
func TestGuestSecretRotationTakesEffectWithoutRestart(t *testing.T) {
	e := startE2E(t, nil)
	secretFile := filepath.Join(e.dir, "dev", "secrets", "guest-dev.b64")
	oldKey := e.guestKey
	oldGuest := e.guest("ada-1", "Ada", oldKey)
	oldAccess := e.access("ada-1", "Ada", oldKey)
	login := func(token string) httpCall { return httpCall{method: "POST", path: "/v1/jwt/login", token: token} }
	message := func(token string) httpCall {
		return httpCall{method: "POST", path: "/v1/messages", token: token, body: `{"roomId":"room-1","text":"hi"}`}
	}
	for name, c := range map[string]httpCall{"guest token": login(oldGuest), "access token": message(oldAccess)} {
		if a := e.check(c); !a.allowed {
			t.Fatalf("before rotation, the %s is denied: %s %s", name, a.reason, a.tokenError)
		}
	}

	newKey := make([]byte, 32)
	if _, err := rand.Read(newKey); err != nil {
		t.Fatal(err)
	}
	// Written in place, as an operator (or a secret store agent) would.
	if err := os.WriteFile(secretFile, []byte(base64.StdEncoding.EncodeToString(newKey)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	newGuest := e.guest("ada-1", "Ada", newKey)
	testsupport.EventuallyState(t, "the rotated secret takes effect", func() (bool, string) {
		o, n := e.check(login(oldGuest)), e.check(login(newGuest))
		return !o.allowed && o.tokenError == "bad_signature" && n.allowed,
			"old: " + o.reason + "/" + o.tokenError + ", new: " + n.reason + "/" + n.tokenError
	})
	if a := e.check(message(oldAccess)); a.allowed || a.status != 401 || a.tokenError != "revoked" {
		t.Errorf("access token of the old secret: allowed=%v %d %s %q, want 401 revoked", a.allowed, a.status, a.reason, a.tokenError)
	}
	if a := e.check(message(e.access("ada-1", "Ada", newKey))); !a.allowed {
		t.Errorf("access token of the new secret: %s %q", a.reason, a.tokenError)
	}
	if rd := e.readyz(); rd.Config.LastError != "" {
		t.Errorf("config reload error after a good rotation: %s", rd.Config.LastError)
	}

	// A secret too short to be one: refused at reload, the new secret
	// keeps verifying, the refusal is visible without the secret in it.
	short := base64.StdEncoding.EncodeToString([]byte("far-too-short"))
	if err := os.WriteFile(secretFile, []byte(short), 0o600); err != nil {
		t.Fatal(err)
	}
	testsupport.EventuallyState(t, "/readyz shows the refused config reload", func() (bool, string) {
		rd := e.readyz()
		// The error names the config key the secret came from.
		return strings.Contains(rd.Config.LastError, "tokens.issuers[1].secret_file"), rd.Config.LastError
	})
	if a := e.check(login(newGuest)); !a.allowed {
		t.Errorf("after a refused reload, the last good secret no longer verifies: %s %q", a.reason, a.tokenError)
	}
	if logs := e.logs.String(); !strings.Contains(logs, "config reload refused") || strings.Contains(logs, short) {
		t.Error("the refused config reload is not logged, or its log holds the secret")
	}
	if rd := e.readyz(); strings.Contains(rd.Config.LastError, short) {
		t.Error("/readyz shows the secret")
	}
}
