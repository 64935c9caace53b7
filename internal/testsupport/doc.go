// Package testsupport is what guestgate's tests and benchmarks share, one
// copy each: the development setup and real tokens of every kind minted
// with it (development.go), CheckRequests as Envoy sends them
// (request.go), copies of the development setup on disk (files.go), a
// goroutine-safe log buffer, bounded polling, reading /metrics, and an
// in-process OTLP trace collector (otlp.go).
//
// Nothing in the product imports it. It builds the development setup's
// signer and verifier with package wiring, as the binary does, so the
// packages wiring uses (config, tokens, issuer) cannot use it in their own
// tests: that would be an import cycle.
package testsupport
