package main

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/guestgate/guestgate/config"
	"github.com/guestgate/guestgate/tokens"
)

// buildTokens turns the config's minting keys into a signer (nil when
// guestgate mints nothing) and its trusted issuers into a verifier.
func buildTokens(ctx context.Context, cfg *config.Config, hooks tokens.Hooks) (*tokens.Signer, *tokens.Verifier, error) {
	if err := refuseDevelopmentMaterial(cfg); err != nil {
		return nil, nil, err
	}
	signer, err := buildSigner(cfg)
	if err != nil {
		return nil, nil, err
	}
	tc := tokens.Config{
		MaxTokenSize: cfg.Tokens.MaxSize,
		Leeway:       cfg.Tokens.Leeway.D(),
		CacheSize:    cfg.Tokens.CacheSize,
		HTTPClient:   &http.Client{Timeout: 10 * time.Second},
		Hooks:        hooks,
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

func mintedFor(cfg *config.Config, kind string) (config.MintedKind, tokens.Kind) {
	switch kind {
	case "secure_anonymous":
		return cfg.Minting.SAT, tokens.KindSecureAnonymous
	case "access":
		return cfg.Minting.Access, tokens.KindAccess
	default:
		return cfg.Minting.XBS, tokens.KindXBSAnonymous
	}
}

func buildSigner(cfg *config.Config) (*tokens.Signer, error) {
	m := cfg.Minting
	if !m.SAT.Configured() && !m.Access.Configured() && !m.XBS.Configured() {
		return nil, nil
	}
	sc, err := signerConfig(cfg)
	if err != nil {
		return nil, err
	}
	s, err := tokens.NewSigner(sc)
	if err != nil {
		return nil, fmt.Errorf("minting: %w", err)
	}
	return s, nil
}

// signerConfig reads the minting keys of the config.
func signerConfig(cfg *config.Config) (tokens.SignerConfig, error) {
	m := cfg.Minting
	sc := tokens.SignerConfig{AnonymousEmailDomain: m.AnonymousEmailDomain}
	for _, k := range []struct {
		key string
		in  config.MintedKind
		out *tokens.MintedKind
	}{
		{"minting.secure_anonymous", m.SAT, &sc.SAT},
		{"minting.access", m.Access, &sc.Access},
		{"minting.xbs_anonymous", m.XBS, &sc.XBS},
	} {
		*k.out = tokens.MintedKind{Issuer: k.in.Issuer, Audience: k.in.Audience}
		for i, f := range k.in.KeyFiles {
			key := fmt.Sprintf("%s.key_files[%d]", k.key, i)
			sk, err := tokens.LoadSigningKey(f)
			if err != nil {
				return tokens.SignerConfig{}, fmt.Errorf("%s: %w", key, err)
			}
			if !cfg.Development {
				fp, err := keyFingerprint(sk.Private)
				if err != nil {
					return tokens.SignerConfig{}, fmt.Errorf("%s: %w", key, err)
				}
				if err := publishedCredential(key, fp); err != nil {
					return tokens.SignerConfig{}, err
				}
			}
			k.out.Keys = append(k.out.Keys, sk)
		}
	}
	return sc, nil
}
