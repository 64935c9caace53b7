package main

// The container image is FROM scratch: no /etc/ssl, so without these
// Mozilla roots (used only where the system has none) guestgate could not
// fetch a JWKS over https there. About 250 KiB of binary.
import _ "golang.org/x/crypto/x509roots/fallback"
