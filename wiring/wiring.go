// Package wiring builds from a *config.Config the parts guestgate runs
// with: the token verifier, the signer and the issuer's settings. It is the
// one place a config becomes those parts: the binary (cmd/guestgate), the
// benchmarks and the tests all build them here, so what they run is what
// guestgate runs.
//
// Every path through it refuses the published development keys and
// secrets (devmaterial.go) unless the config is the development setup
// (config.Config.Development, `development: true`, which config holds to
// loopback listeners). There is no other way to keep them.
//
// It sits on the middle floor: it uses config, tokens and issuer, and
// nothing below it imports it.
package wiring

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/guestgate/guestgate/config"
	"github.com/guestgate/guestgate/issuer"
	"github.com/guestgate/guestgate/tokens"
)

// Options are what a caller adds to the config's token settings.
type Options struct {
	// Hooks observe the verifier's cache look-ups and JWKS fetches (the
	// binary counts them in its metrics). Empty: nothing observes them.
	Hooks tokens.Hooks
}

// jwksTimeout bounds one JWKS fetch of a trusted issuer's jwks_url.
const jwksTimeout = 10 * time.Second

// Tokens turns the config's minting keys into a signer (nil when guestgate
// mints nothing) and its trusted issuers into a verifier, refusing the
// published development material outside the development setup. The caller
// closes the verifier.
func Tokens(ctx context.Context, cfg *config.Config, opts Options) (*tokens.Signer, *tokens.Verifier, error) {
	signer, err := Signer(cfg)
	if err != nil {
		return nil, nil, err
	}
	tc := tokens.Config{
		MaxTokenSize: cfg.Tokens.MaxSize,
		Leeway:       cfg.Tokens.Leeway.D(),
		CacheSize:    cfg.Tokens.CacheSize,
		HTTPClient:   &http.Client{Timeout: jwksTimeout},
		Hooks:        opts.Hooks,
	}
	for i, ti := range cfg.Tokens.Issuers {
		key := fmt.Sprintf("tokens.issuers[%d]", i)
		is := tokens.Issuer{
			Name:        ti.Name,
			Kind:        tokens.Kind(ti.Kind),
			Issuer:      ti.Issuer,
			Audiences:   ti.Audiences,
			Algorithms:  ti.Algorithms,
			Keys:        tokens.KeySource{File: ti.JWKSFile, Inline: ti.JWKS, URL: ti.JWKSURL, Refresh: ti.JWKSRefresh.D(), MaxStale: ti.JWKSMaxStale.D()},
			GuestSecret: ti.Secret,
			MaxLifetime: ti.MaxLifetime.D(),
			// The config defaults it: true for guestgate's own session
			// issuer only.
			AssertsBindingClaims: ti.AssertsBindingClaims != nil && *ti.AssertsBindingClaims,
		}
		if ti.Regular != nil {
			is.Regular = &tokens.Regular{AuthorizationTypes: ti.Regular.AuthorizationTypes}
		}
		if ti.Kind == "guest" {
			// Checked here, not only in tokens.New, so the error names the
			// config key the secret came from (never the secret).
			src := key + ".secret_file"
			if ti.SecretEnv != "" {
				src = key + ".secret_env"
			}
			if _, err := tokens.DecodeGuestSecret(ti.Secret); err != nil {
				return nil, nil, fmt.Errorf("%s: %w", src, err)
			}
		}
		if ti.Kind != "guest" && ti.JWKSFile == "" && ti.JWKS == "" && ti.JWKSURL == "" {
			// No keys of its own: an issuer guestgate mints for itself.
			minted, kind := mintedFor(cfg, ti.Kind)
			if signer == nil || !minted.Configured() || minted.Issuer != ti.Issuer {
				return nil, nil, fmt.Errorf("%s: no keys: set jwks_file, jwks or jwks_url, or mint this issuer's tokens here (minting.%s.issuer %q)", key, ti.Kind, ti.Issuer)
			}
			is.PublicKeys = signer.PublicKeys(kind)
			if len(is.Audiences) == 0 {
				is.Audiences = []string{minted.Audience}
			}
		}
		tc.Issuers = append(tc.Issuers, is)
	}
	verifier, err := tokens.New(ctx, tc)
	if err != nil {
		// tokens.New's errors already start with "tokens:".
		return nil, nil, err
	}
	return signer, verifier, nil
}

// IssuerSettings are the issuer's settings for cfg: its section of the
// config, with the signer it mints with and the verifier its login
// exchange checks guest tokens with (both from Tokens).
func IssuerSettings(cfg *config.Config, signer *tokens.Signer, v *tokens.Verifier) issuer.Settings {
	return issuer.Settings{Config: cfg.Issuer, Signer: signer, Verifier: v}
}
