package testsupport

import (
	"context"
	"fmt"
	"time"

	"github.com/guestgate/guestgate/config"
	"github.com/guestgate/guestgate/tokens"
	"github.com/guestgate/guestgate/wiring"
)

// Development is a development config (testdata/dev/guestgate.yaml, or a
// copy from CopyDevelopment) with its signer, so tokens that config trusts
// can be minted.
type Development struct {
	Config      *config.Config
	Signer      *tokens.Signer
	guestIssuer string
	guestSecret []byte
}

// LoadDevelopment reads a development config and builds its signer as
// guestgate does (package wiring).
func LoadDevelopment(path string) (*Development, error) {
	cfg, err := config.Load(path)
	if err != nil {
		return nil, err
	}
	d := &Development{Config: cfg}
	if d.Signer, err = wiring.Signer(cfg); err != nil {
		return nil, err
	}
	if d.Signer == nil {
		return nil, fmt.Errorf("%s: no minting keys", path)
	}
	for _, ti := range cfg.Tokens.Issuers {
		if ti.Kind == "guest" && d.guestSecret == nil {
			if d.guestSecret, err = tokens.DecodeGuestSecret(ti.Secret); err != nil {
				return nil, fmt.Errorf("%s: %w", ti.Name, err)
			}
			d.guestIssuer = ti.Issuer
		}
	}
	if d.guestSecret == nil {
		return nil, fmt.Errorf("%s: no guest issuer", path)
	}
	return d, nil
}

// Verifier builds the verifier the config describes, as guestgate does
// (package wiring). cacheSize overrides the config's token cache size
// (0: the config's; negative: no cache). The caller closes it.
func (d *Development) Verifier(ctx context.Context, cacheSize int) (*tokens.Verifier, error) {
	cfg := *d.Config
	if cacheSize != 0 {
		cfg.Tokens.CacheSize = cacheSize
	}
	_, v, err := wiring.Tokens(ctx, &cfg, wiring.Options{})
	return v, err
}

// Tokens are one token of each kind, for one visitor, guest or launchpad.
type Tokens struct {
	Kite, Link, Guest, Access, SAT string
	GuestPersonID                  string // the access token's subject
}

// Mint mints one token of each kind; n tells visitors apart: visitor n's
// Kite token is bound to KiteChannel(n), its SAT opens Launchpad(n).
func (d *Development) Mint(n int) (Tokens, error) {
	var t Tokens
	kite, err := d.Signer.MintXBSAnonymous(tokens.XBSClaims{Entry: tokens.EntryKite, WidgetID: "W-DEMO", ChannelID: KiteChannel(n)})
	if err != nil {
		return t, err
	}
	link, err := d.Signer.MintXBSAnonymous(tokens.XBSClaims{Entry: tokens.EntryPublicLink, ChannelID: "public-lobby"})
	if err != nil {
		return t, err
	}
	sub := fmt.Sprintf("guest-user-%d", n)
	guest, err := tokens.MintGuest(d.guestSecret, d.guestIssuer, sub, "Guest "+sub, time.Now().Add(time.Hour))
	if err != nil {
		return t, err
	}
	access, err := d.Signer.MintAccess(tokens.AccessClaims{GuestIssuer: d.guestIssuer, GuestSubject: sub,
		Name: "Guest " + sub, Generation: tokens.SecretGeneration(d.guestSecret)})
	if err != nil {
		return t, err
	}
	sat, err := d.Signer.MintSAT(tokens.SATClaims{AccountID: "acct-1", ProviderID: "prov-1", Scope: "launchpads/" + Launchpad(n)})
	if err != nil {
		return t, err
	}
	return Tokens{Kite: kite.Token, Link: link.Token, Guest: guest, Access: access.Token, SAT: sat.Token,
		GuestPersonID: access.Subject}, nil
}

// KiteChannel is visitor n's own Kite channel.
func KiteChannel(n int) string { return fmt.Sprintf("kite-%04d", n) }

// Launchpad is the launchpad SAT n opens.
func Launchpad(n int) string { return fmt.Sprintf("lp-%04d", n) }
