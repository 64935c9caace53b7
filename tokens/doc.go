// Package tokens verifies the credentials guestgate trusts and mints the
// ones it issues itself.
//
// There is one Verifier for every kind of token (Kind: xbs_anonymous,
// regular, guest, secure_anonymous, access). Before any library sees a
// token, the strict parser bounds its size and checks its segments, its
// base64url and its JSON (jose.go, with strictjson). Then the token's "iss"
// picks the one configured issuer entry it claims to come from, and from
// there that entry alone decides (RFC 8725 §2, §3.1, §3.11): the algorithm
// allow-list, the typ, the keys or the guest secret, the audience, and
// which kind's claim checks run. Each kind has its own claim check
// (claims.go; regular tokens are told from anonymous ones by the
// xbs_anonymous entry's) and an entry runs exactly one, so no token passes
// as a kind its issuer does not issue. Verify (verify.go) takes those steps
// in the order the specifications give them; every failure is an *Error
// with a stable code (errors.go). A token that verified is cached by the
// SHA-256 of its bytes, its times checked again on every hit, until it
// expires or the key set that vouched for it changes; failures that cannot
// heal are remembered apart (cache.go).
//
// The files, in the order a token meets them: verifier.go (Config, Issuer
// and New, which builds the entries once), verify.go, jose.go,
// signature.go, claims.go, cache.go; the keys behind them: keys.go (a key
// set's life cycle), jwks.go (reading a JWKS), keyurl.go (which URLs a key
// set may be fetched from); guest secrets: secrets.go. Minting:
// signingkey.go (loading the keys guestgate signs with) and signer.go (the
// Signer, which mints secure_anonymous, access and xbs_anonymous tokens;
// guest tokens are minted by partner apps, MintGuest does as they do).
package tokens
