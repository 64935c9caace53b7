package config

import (
	"fmt"
	"math"
	"net/netip"
	"strings"
	"time"
)

// Issuer configures guestgate's own minting routes: the Secure Anonymous
// Token API (its customer → org → account hierarchy, the API integrations
// that call it and the providers it mints for), the guest login exchange,
// anonymous sessions for widgets and public-chat links, and the abuse
// limits in front of all of them. The tokens are signed with the keys of
// minting.
type Issuer struct {
	// Enabled turns the minting routes on, on the public listener and on the
	// admin listener. Empty (false): they answer 404. The JWKS is published
	// whatever this says.
	Enabled bool `yaml:"enabled"`

	// Customers is the SAT hierarchy: customers hold orgs, orgs hold
	// accounts. An integration's scope and a provider's account name entries
	// here. Empty: no SAT can be minted.
	Customers []Customer `yaml:"customers"`
	// Integrations are the API credentials that call the SAT API.
	Integrations []Integration `yaml:"integrations"`
	// Providers are what a SAT is minted from, one account's each.
	Providers []Provider `yaml:"providers"`
	// AllowAdministratorProviders accepts providers whose role is
	// administrator. Empty (false): such a provider is refused at load; the
	// product recommends launchpad users only, since an administrator's reach
	// in an anonymous browser token is rarely what anyone wants.
	AllowAdministratorProviders bool `yaml:"allow_administrator_providers"`

	// RateLimits bound how fast tokens are minted.
	RateLimits RateLimits `yaml:"rate_limits"`
	// TrustedProxies are the addresses or CIDR prefixes of the proxies whose
	// X-Forwarded-For names the client. Empty: X-Forwarded-For is ignored
	// and the peer address is the client's.
	TrustedProxies []string `yaml:"trusted_proxies"`
	// MaxBodyBytes bounds a minting request's body. Empty: 16 KiB.
	MaxBodyBytes int `yaml:"max_body_bytes"`
}

// Customer is the top of the SAT hierarchy.
type Customer struct {
	// ID names the customer in scopes ("customer:<id>"). Required, unique.
	ID   string `yaml:"id"`
	Orgs []Org  `yaml:"orgs"`
}

// Org is a customer's organisation.
type Org struct {
	// ID names the org in scopes ("org:<id>"). Required, unique.
	ID string `yaml:"id"`
	// Accounts are the org's account ids, as in the SAT API's path
	// /v1/accounts/{account_id}/...; unique across the whole hierarchy.
	Accounts []string `yaml:"accounts"`
}

// Integration is one API credential of the SAT API.
type Integration struct {
	// ClientID is sent as X-Frame-ClientId. Required, unique.
	ClientID string `yaml:"client_id"`
	// SecretFile or SecretEnv holds the client secret (at least 32
	// characters), the HMAC key of X-Frame-Signature. Exactly one; a secret
	// is never written in this file.
	SecretFile string `yaml:"secret_file"`
	SecretEnv  string `yaml:"secret_env"`
	// Role is administrator (may mint) or launchpad_user (may not: a
	// Launchpad user's credential is refused with 403). Required.
	Role string `yaml:"role"`
	// Scope is the part of the hierarchy the integration administers:
	// "customer:<id>", "org:<id>" or "account:<id>". Required.
	Scope string `yaml:"scope"`

	// Secret is the secret read from SecretFile or SecretEnv at load.
	Secret string `yaml:"-"`
}

// Provider is what the SAT API mints from: its tokens' duration, role and
// scope.
type Provider struct {
	// ID is the {provider_id} of the SAT API's path. Required, unique.
	ID string `yaml:"id"`
	// Account is the account the provider belongs to; only that account's
	// path mints with it. Required, an account of customers.
	Account string `yaml:"account"`
	// Description is for people reading the config.
	Description string `yaml:"description"`
	// Duration is the lifetime of the provider's tokens, at most 24h.
	// Empty: 1h.
	Duration Duration `yaml:"duration"`
	// Role is the tokens' role. Empty: launchpad_user. administrator only
	// with allow_administrator_providers.
	Role string `yaml:"role"`
	// Scope is the resource the tokens open, e.g. "launchpads/lp-123".
	// Required.
	Scope string `yaml:"scope"`
}

// RateLimits are token-bucket limits (golang.org/x/time/rate); a request
// over a limit gets 429 with Retry-After.
type RateLimits struct {
	// PerClient limits each caller: an API integration, a guest issuer, a
	// widget or a public channel. Empty: 10 per second, burst 20.
	PerClient Rate `yaml:"per_client"`
	// PerAddress limits each client address (an IPv6 address by its /64).
	// Empty: 5 per second, burst 20.
	PerAddress Rate `yaml:"per_address"`
	// MaxTracked is accepted and no longer used: the buckets are the state
	// store's (state.max_rate_keys bounds the embedded store's; Redis
	// drops a bucket once it has refilled).
	MaxTracked int `yaml:"max_tracked"`
	// ReplayMemory is accepted and no longer used: the SAT replay memory
	// is the state store's, bounded per integration by what per_client
	// lets through in the 10-minute window a signature is valid (burst +
	// per_second × 600).
	ReplayMemory int `yaml:"replay_memory"`
}

// Rate is one token bucket.
type Rate struct {
	// PerSecond is the sustained rate.
	PerSecond float64 `yaml:"per_second"`
	// Burst is how many requests may come at once.
	Burst int `yaml:"burst"`
}

// Roles of integrations and providers.
const (
	RoleAdministrator = "administrator"
	RoleLaunchpadUser = "launchpad_user"
)

// SignatureWindow is how far X-Frame-Timestamp may lie from now, either way.
const SignatureWindow = 5 * time.Minute

// MinClientSecretLen is the least length of an integration's secret.
const MinClientSecretLen = 32

func (is *Issuer) resolvePaths(abs func(*string)) {
	for i := range is.Integrations {
		abs(&is.Integrations[i].SecretFile)
	}
}

func (is *Issuer) applyDefaults() {
	if is.MaxBodyBytes == 0 {
		is.MaxBodyBytes = 16 << 10
	}
	rl := &is.RateLimits
	if rl.PerClient == (Rate{}) {
		rl.PerClient = Rate{PerSecond: 10, Burst: 20}
	}
	if rl.PerAddress == (Rate{}) {
		rl.PerAddress = Rate{PerSecond: 5, Burst: 20}
	}
	if rl.MaxTracked == 0 {
		rl.MaxTracked = 10000
	}
	if rl.ReplayMemory == 0 && rl.PerClient.PerSecond > 0 {
		window := 2 * SignatureWindow.Seconds()
		rl.ReplayMemory = int(math.Min(rl.PerClient.PerSecond*window+float64(rl.PerClient.Burst), 1<<20))
	}
	for i := range is.Providers {
		if is.Providers[i].Role == "" {
			is.Providers[i].Role = RoleLaunchpadUser
		}
		if is.Providers[i].Duration == 0 {
			is.Providers[i].Duration = Duration(time.Hour)
		}
	}
}

func (is *Issuer) readSecrets() error {
	for i := range is.Integrations {
		in := &is.Integrations[i]
		var err error
		if in.Secret, err = readSecret(fmt.Sprintf("issuer.integrations[%d]", i), in.SecretFile, in.SecretEnv); err != nil {
			return err
		}
	}
	return nil
}

// validate adds every problem of the issuer section.
func (is *Issuer) validate(c *Config, add func(key, format string, args ...any)) {
	if is.MaxBodyBytes < 256 || is.MaxBodyBytes > 1<<20 {
		add("issuer.max_body_bytes", "must be between 256 and 1048576")
	}
	for key, r := range map[string]Rate{"issuer.rate_limits.per_client": is.RateLimits.PerClient, "issuer.rate_limits.per_address": is.RateLimits.PerAddress} {
		if r.PerSecond <= 0 || math.IsInf(r.PerSecond, 0) || math.IsNaN(r.PerSecond) || r.PerSecond > 1e6 {
			add(key+".per_second", "must be above 0 and at most 1000000")
		}
		if r.Burst < 1 || r.Burst > 1e6 {
			add(key+".burst", "must be between 1 and 1000000")
		}
	}
	if is.RateLimits.MaxTracked < 1 || is.RateLimits.MaxTracked > 1e7 {
		add("issuer.rate_limits.max_tracked", "must be between 1 and 10000000")
	}
	if is.RateLimits.ReplayMemory < 1 || is.RateLimits.ReplayMemory > 1<<20 {
		add("issuer.rate_limits.replay_memory", "must be between 1 and 1048576")
	}
	for i, p := range is.TrustedProxies {
		if _, err := ParseProxy(p); err != nil {
			add(fmt.Sprintf("issuer.trusted_proxies[%d]", i), "%v", err)
		}
	}

	// The hierarchy: every id once, across its level.
	customers, orgs, accounts := map[string]bool{}, map[string]bool{}, map[string]bool{}
	for i, cu := range is.Customers {
		key := fmt.Sprintf("issuer.customers[%d]", i)
		checkID(add, key+".id", cu.ID, customers)
		for j, o := range cu.Orgs {
			okey := fmt.Sprintf("%s.orgs[%d]", key, j)
			checkID(add, okey+".id", o.ID, orgs)
			for k, a := range o.Accounts {
				checkID(add, fmt.Sprintf("%s.accounts[%d]", okey, k), a, accounts)
			}
		}
	}
	clients := map[string]bool{}
	for i, in := range is.Integrations {
		key := fmt.Sprintf("issuer.integrations[%d]", i)
		checkID(add, key+".client_id", in.ClientID, clients)
		if in.SecretFile == "" && in.SecretEnv == "" {
			add(key+".secret_file", "an integration needs secret_file or secret_env")
		} else if len(in.Secret) < MinClientSecretLen {
			add(key+".secret_file", "the client secret must be at least %d characters", MinClientSecretLen)
		}
		if in.Role != RoleAdministrator && in.Role != RoleLaunchpadUser {
			add(key+".role", "%q is not %s or %s", in.Role, RoleAdministrator, RoleLaunchpadUser)
		}
		level, id, ok := strings.Cut(in.Scope, ":")
		switch {
		case !ok:
			add(key+".scope", "%q is not customer:<id>, org:<id> or account:<id>", in.Scope)
		case level == "customer" && customers[id], level == "org" && orgs[id], level == "account" && accounts[id]:
		default:
			add(key+".scope", "%q names no %s of issuer.customers", in.Scope, level)
		}
	}
	providers := map[string]bool{}
	for i, p := range is.Providers {
		key := fmt.Sprintf("issuer.providers[%d]", i)
		checkID(add, key+".id", p.ID, providers)
		if !accounts[p.Account] {
			add(key+".account", "%q is not an account of issuer.customers", p.Account)
		}
		switch p.Role {
		case RoleLaunchpadUser:
		case RoleAdministrator:
			if !is.AllowAdministratorProviders {
				add(key+".role", "a provider with the administrator role puts an administrator's reach in an anonymous token; set issuer.allow_administrator_providers to accept it")
			}
		default:
			add(key+".role", "%q is not %s or %s", p.Role, RoleLaunchpadUser, RoleAdministrator)
		}
		if p.Duration.D() < time.Minute || p.Duration.D() > 24*time.Hour {
			add(key+".duration", "must be between 1m and 24h")
		}
		if !validScope(p.Scope) {
			add(key+".scope", "%q is not a resource path such as launchpads/lp-123", p.Scope)
		}
	}
	if is.Enabled && !c.Minting.SAT.Configured() && !c.Minting.Access.Configured() && !c.Minting.XBS.Configured() {
		add("issuer.enabled", "the issuer mints with the keys of minting: configure at least one kind")
	}
	if len(is.Providers) > 0 && !c.Minting.SAT.Configured() {
		add("issuer.providers", "providers mint secure anonymous tokens: configure minting.secure_anonymous")
	}
}

// checkID takes an id of letters, digits and "-._", 1 to 128 long, unique
// among seen.
func checkID(add func(key, format string, args ...any), key, id string, seen map[string]bool) {
	if !ValidID(id) {
		add(key, "%q must be 1 to 128 letters, digits and \"-._\"", id)
		return
	}
	if seen[id] {
		add(key, "%q is used twice", id)
	}
	seen[id] = true
}

// ValidID says whether id is 1 to 128 letters, digits and "-._": the ids
// of the issuer section, and what tokens.Signer takes as a widget or
// channel id.
func ValidID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_') {
			return false
		}
	}
	return true
}

// validScope takes what tokens.Signer takes: segments of unreserved
// characters, none "." or "..", separated by single slashes.
func validScope(s string) bool {
	if s == "" || len(s) > 256 {
		return false
	}
	for _, seg := range strings.Split(s, "/") {
		if seg == "." || seg == ".." || !ValidID(strings.ReplaceAll(seg, "~", "-")) {
			return false
		}
	}
	return true
}

// ParseProxy reads a trusted proxy entry: an IP address (a prefix of its
// full length) or a CIDR prefix. The issuer's and the HTTP check's trusted
// proxies are both read with it.
func ParseProxy(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not a CIDR such as 10.0.0.0/8", s)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not an IP address or a CIDR", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// Covers says whether the integration's scope reaches account.
func (is *Issuer) Covers(scope, account string) bool {
	level, id, _ := strings.Cut(scope, ":")
	for _, cu := range is.Customers {
		for _, o := range cu.Orgs {
			for _, a := range o.Accounts {
				if a != account {
					continue
				}
				switch level {
				case "customer":
					return cu.ID == id
				case "org":
					return o.ID == id
				case "account":
					return a == id
				}
				return false
			}
		}
	}
	return false
}
