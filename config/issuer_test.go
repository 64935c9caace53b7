package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// issuerDoc is a valid issuer section; the cases below break one key each.
const issuerDoc = `
minting:
  secure_anonymous: {issuer: s, audience: a, key_files: [k.pem]}
issuer:
  enabled: true
  customers:
    - id: acme
      orgs:
        - id: acme-eu
          accounts: [acct-1, acct-2]
    - id: other
      orgs:
        - id: other-org
          accounts: [acct-9]
  integrations:
    - {client_id: admin, secret_file: client.secret, role: administrator, scope: "org:acme-eu"}
  providers:
    - {id: prov-1, account: acct-1, scope: launchpads/lp-1, duration: 30m}
`

func parseIssuer(t *testing.T, doc string) (*Config, error) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "client.secret"), []byte(strings.Repeat("s", 40)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "short.secret"), []byte("short"), 0o600); err != nil {
		t.Fatal(err)
	}
	return Parse([]byte(doc), dir)
}

func TestIssuerSectionLoadsWithDefaults(t *testing.T) {
	c, err := parseIssuer(t, issuerDoc)
	if err != nil {
		t.Fatal(err)
	}
	is := c.Issuer
	if !is.Enabled || is.Integrations[0].Secret != strings.Repeat("s", 40) {
		t.Fatalf("issuer = %+v", is)
	}
	if p := is.Providers[0]; p.Role != RoleLaunchpadUser || p.Duration.D() != 30*time.Minute {
		t.Fatalf("provider = %+v", p)
	}
	// The replay memory holds what the per-client limit lets through in the
	// 10-minute window: 20 + 10 × 600.
	if is.RateLimits.ReplayMemory != 6020 || is.MaxBodyBytes != 16<<10 {
		t.Fatalf("defaults = %+v, %d", is.RateLimits, is.MaxBodyBytes)
	}
	if !strings.Contains(strings.Join(c.Files(), " "), "client.secret") {
		t.Fatalf("the integration's secret file is not watched: %v", c.Files())
	}
}

func TestIssuerScopeCoversTheHierarchyBelowIt(t *testing.T) {
	c, err := parseIssuer(t, issuerDoc)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		scope, account string
		want           bool
	}{
		{"customer:acme", "acct-2", true},
		{"org:acme-eu", "acct-1", true},
		{"account:acct-1", "acct-1", true},
		{"account:acct-1", "acct-2", false},
		{"org:acme-eu", "acct-9", false},
		{"customer:acme", "acct-9", false},
		{"customer:acme", "nowhere", false},
		{"acct-1", "acct-1", false},
	}
	for _, tc := range cases {
		if got := c.Issuer.Covers(tc.scope, tc.account); got != tc.want {
			t.Errorf("Covers(%q, %q) = %v", tc.scope, tc.account, got)
		}
	}
}

func TestBadIssuerConfigErrorsNameTheKey(t *testing.T) {
	cases := []struct{ name, old, new, key string }{
		{"administrator provider", "scope: launchpads/lp-1, duration", "role: administrator, scope: launchpads/lp-1, duration", "issuer.providers[0].role"},
		{"provider of no account", "account: acct-1", "account: acct-7", "issuer.providers[0].account"},
		{"provider scope climbs out", "launchpads/lp-1", "launchpads/..", "issuer.providers[0].scope"},
		{"provider duration too long", "duration: 30m", "duration: 48h", "issuer.providers[0].duration"},
		{"integration scope unknown", `scope: "org:acme-eu"`, `scope: "org:nowhere"`, "issuer.integrations[0].scope"},
		{"integration scope without level", `scope: "org:acme-eu"`, `scope: "acme-eu"`, "issuer.integrations[0].scope"},
		{"integration role", "role: administrator", "role: owner", "issuer.integrations[0].role"},
		{"inline secret", "secret_file: client.secret", "secret: hunter2", "secret"},
		{"no secret", "secret_file: client.secret, ", "", "issuer.integrations[0].secret_file"},
		{"short secret", "secret_file: client.secret", "secret_file: short.secret", "issuer.integrations[0].secret_file"},
		{"unset secret env", "secret_file: client.secret", "secret_env: GUESTGATE_TEST_UNSET_CLIENT_SECRET", "issuer.integrations[0].secret_env"},
		{"duplicate account", "accounts: [acct-9]", "accounts: [acct-1]", "issuer.customers[1].orgs[0].accounts[0]"},
		{"bad proxy", "enabled: true", "enabled: true\n  trusted_proxies: [10.0.0.0/33]", "issuer.trusted_proxies[0]"},
		{"zero rate", "enabled: true", "enabled: true\n  rate_limits: {per_client: {per_second: 0, burst: 3}}", "issuer.rate_limits.per_client.per_second"},
		{"oversize body bound", "enabled: true", "enabled: true\n  max_body_bytes: 100000000", "issuer.max_body_bytes"},
		{"providers without minting", "secure_anonymous: {issuer: s, audience: a, key_files: [k.pem]}", "access: {issuer: s, audience: a, key_files: [k.pem]}", "issuer.providers"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			doc := strings.Replace(issuerDoc, tc.old, tc.new, 1)
			if doc == issuerDoc {
				t.Fatalf("case does not change the document")
			}
			_, err := parseIssuer(t, doc)
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tc.key) {
				t.Fatalf("error %q does not name %q", err, tc.key)
			}
		})
	}
}

// TestOwnSATIssuerTakesNoLongerTokensThanItsProviders: the verifier entry
// of guestgate's own SAT issuer is bounded by the longest provider
// duration (what it mints), unless the entry says otherwise; another SAT
// issuer's entry keeps the verifier's default; no entry takes more than
// MaxTokenLifetime.
func TestOwnSATIssuerTakesNoLongerTokensThanItsProviders(t *testing.T) {
	doc := issuerDoc + `    - {id: prov-2, account: acct-2, scope: launchpads/lp-2, duration: 2h}
    - {id: prov-3, account: acct-2, scope: launchpads/lp-3}
tokens:
  issuers:
    - {name: own, kind: secure_anonymous, issuer: s, jwks: '{"keys":[]}'}
    - {name: other, kind: secure_anonymous, issuer: elsewhere, audiences: [a], jwks: '{"keys":[]}'}
`
	c, err := parseIssuer(t, doc)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Tokens.Issuers[0].MaxLifetime.D(); got != 2*time.Hour {
		t.Errorf("own SAT issuer: max_lifetime %s, want the longest provider's 2h", got)
	}
	if got := c.Tokens.Issuers[1].MaxLifetime.D(); got != 0 {
		t.Errorf("another SAT issuer: max_lifetime %s, want the verifier's default (0)", got)
	}
	set, err := parseIssuer(t, issuerDoc+"tokens:\n  issuers:\n    - {name: own, kind: secure_anonymous, issuer: s, max_lifetime: 3h, jwks: '{\"keys\":[]}'}\n")
	if err != nil {
		t.Fatal(err)
	}
	if got := set.Tokens.Issuers[0].MaxLifetime.D(); got != 3*time.Hour {
		t.Errorf("own SAT issuer with max_lifetime 3h: %s", got)
	}
	if _, err := parseIssuer(t, issuerDoc+"tokens:\n  issuers:\n    - {name: own, kind: secure_anonymous, issuer: s, max_lifetime: 169h, jwks: '{\"keys\":[]}'}\n"); err == nil || !strings.Contains(err.Error(), "tokens.issuers[0].max_lifetime") {
		t.Errorf("max_lifetime 169h: %v, want refused naming the key", err)
	}
}

func TestAdministratorProviderAcceptedWhenExplicitlyAllowed(t *testing.T) {
	doc := strings.Replace(issuerDoc, "scope: launchpads/lp-1, duration", "role: administrator, scope: launchpads/lp-1, duration", 1)
	doc = strings.Replace(doc, "enabled: true", "enabled: true\n  allow_administrator_providers: true", 1)
	c, err := parseIssuer(t, doc)
	if err != nil {
		t.Fatal(err)
	}
	if c.Issuer.Providers[0].Role != RoleAdministrator {
		t.Fatalf("role = %q", c.Issuer.Providers[0].Role)
	}
}

func TestTrustedProxyEntries(t *testing.T) {
	for in, want := range map[string]string{"10.1.2.3": "10.1.2.3/32", "10.1.2.3/8": "10.0.0.0/8", "::1": "::1/128", "::ffff:10.0.0.1": "10.0.0.1/32"} {
		p, err := ParseProxy(in)
		if err != nil || p.String() != want {
			t.Errorf("ParseProxy(%q) = %v, %v; want %s", in, p, err, want)
		}
	}
	if _, err := ParseProxy("proxy.example"); err == nil {
		t.Error("a host name was taken as a proxy address")
	}
}
