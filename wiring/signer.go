package wiring

import (
	"fmt"

	"github.com/guestgate/guestgate/config"
	"github.com/guestgate/guestgate/tokens"
)

// Signer builds the signer of the config's minting keys, nil when
// guestgate mints nothing. Outside the development setup it refuses a
// config that holds any published development key or secret, minting or
// not: a token signed with a published key is never minted for it.
func Signer(cfg *config.Config) (*tokens.Signer, error) {
	m := cfg.Minting
	if !m.SAT.Configured() && !m.Access.Configured() && !m.XBS.Configured() {
		// Nothing to mint, and still nothing published to verify with.
		return nil, refuseDevelopmentMaterial(cfg)
	}
	sc, err := SignerConfig(cfg)
	if err != nil {
		return nil, err
	}
	s, err := tokens.NewSigner(sc)
	if err != nil {
		return nil, fmt.Errorf("minting: %w", err)
	}
	return s, nil
}

// SignerConfig reads the config's minting keys, for a caller that sets
// more of the signer than the config says (a test's clock), with the same
// refusal of published development material as Signer.
func SignerConfig(cfg *config.Config) (tokens.SignerConfig, error) {
	if err := refuseDevelopmentMaterial(cfg); err != nil {
		return tokens.SignerConfig{}, err
	}
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
				// Checked as each key is loaded, not by
				// refuseDevelopmentMaterial, so no key file is read twice.
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

// mintedFor is the minting section and token kind of a trusted issuer's
// kind (config kinds other than guest).
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
