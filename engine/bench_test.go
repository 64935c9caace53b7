package engine

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
)

// benchInput is a request in the shape ext_authz builds: an anonymous widget
// visitor marking a chat read.
func benchInput(b *testing.B, command string) ast.Value {
	b.Helper()
	v, err := ast.InterfaceToValue(map[string]any{
		"attributes": map[string]any{
			"request": map[string]any{"http": map[string]any{
				"id":     "4711",
				"method": "POST",
				"path":   "/conversations/channels/support-1/" + command,
				"host":   "chat.example.com",
				"scheme": "https",
				"headers": map[string]any{
					"authorization": "<redacted>",
					"content-type":  "application/json",
					"user-agent":    "bench",
				},
			}},
			"source":      map[string]any{"address": map[string]any{"socketAddress": map[string]any{"address": "10.0.0.7", "portValue": 51234}}},
			"destination": map[string]any{"address": map[string]any{"socketAddress": map[string]any{"address": "10.0.0.1", "portValue": 8080}}},
		},
		"parsed_path":    []any{"conversations", "channels", "support-1", command},
		"parsed_query":   map[string]any{},
		"parsed_body":    nil,
		"truncated_body": false,
		"version":        map[string]any{"ext_authz": "v3", "encoding": "protojson"},
		"request_id":     "req-1",
		"token": map[string]any{
			"kind":       "xbs_anonymous",
			"subject":    "7c1f0e1e-0000-4000-8000-000000000001",
			"issuer":     "https://guestgate.example.com",
			"name":       "guest",
			"email":      "anonymous-w-demo@anonymous.example.com",
			"expires_at": 1900000000,
			"claims": map[string]any{
				"sub":                       "7c1f0e1e-0000-4000-8000-000000000001",
				"custom:wid":                "W-DEMO",
				"custom:channel_id":         "support-1",
				"custom:entry":              "kite",
				"custom:authorization_type": "XBS_ANONYMOUS",
				"token_use":                 "id",
			},
		},
	})
	if err != nil {
		b.Fatal(err)
	}
	return v
}

// BenchmarkEval measures policy evaluation alone (the decision cache off)
// of the small test policy.
func BenchmarkEval(b *testing.B) {
	e, err := New(Options{Dir: "testdata/chat", DecisionCacheSize: -1, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct {
		name, command string
		allowed       bool
	}{
		{"allow", "MarkReadCommand", true},
		{"deny", "ListChannelsCommand", false},
	} {
		b.Run(tc.name, func(b *testing.B) {
			input := benchInput(b, tc.command)
			ctx := context.Background()
			res, err := e.Eval(ctx, input)
			if err != nil || !res.Defined {
				b.Fatalf("Eval = %v, %v", res, err)
			}
			if got := res.Value.(ast.Object).Get(ast.StringTerm("allowed")); !got.Equal(ast.BooleanTerm(tc.allowed)) {
				b.Fatalf("allowed = %v, want %v", got, tc.allowed)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := e.Eval(ctx, input); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("allow-parallel", func(b *testing.B) {
		input := benchInput(b, "MarkReadCommand")
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := e.Eval(ctx, input); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

// BenchmarkEvalShippedPolicy is policy evaluation alone with the shipped
// policies/ and its data: an anonymous widget visitor's command in its own
// Kite channel (allowed) and a command off the list (denied); "cached" is
// the same decision repeated with the decision cache on (key and look-up).
func BenchmarkEvalShippedPolicy(b *testing.B) {
	discard := slog.New(slog.NewTextHandler(io.Discard, nil))
	uncached, err := New(Options{Dir: "../policies", DecisionCacheSize: -1, Logger: discard})
	if err != nil {
		b.Fatal(err)
	}
	cached, err := New(Options{Dir: "../policies", Logger: discard})
	if err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct {
		name, path string
		allowed    bool
		e          *Engine
	}{
		{"xbs_allow", "/conversations/channels/kite-7f3a/MarkReadCommand", true, uncached},
		{"xbs_deny", "/conversations/ListChannelsCommand", false, uncached},
		{"xbs_allow/cached", "/conversations/channels/kite-7f3a/MarkReadCommand", true, cached},
	} {
		e := tc.e
		b.Run(tc.name, func(b *testing.B) {
			input := shippedInput(b, tc.path)
			ctx := context.Background()
			res, err := e.Eval(ctx, input)
			if err != nil || !res.Defined {
				b.Fatalf("Eval = %v, %v", res, err)
			}
			if got := res.Value.(ast.Object).Get(ast.StringTerm("allowed")); !got.Equal(ast.BooleanTerm(tc.allowed)) {
				b.Fatalf("allowed = %v, want %v: %v", got, tc.allowed, res.Value)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := e.Eval(ctx, input); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// shippedInput is the input ext_authz builds for a kite visitor of the
// development widget W-DEMO bound to channel kite-7f3a.
func shippedInput(b *testing.B, path string) ast.Value {
	b.Helper()
	segs := []any{}
	for _, s := range strings.Split(strings.TrimPrefix(path, "/"), "/") {
		segs = append(segs, s)
	}
	v, err := ast.InterfaceToValue(map[string]any{
		"attributes": map[string]any{
			"request": map[string]any{"http": map[string]any{
				"id": "4711", "method": "POST", "path": path, "host": "chat.example.com", "scheme": "https",
				"headers": map[string]any{"authorization": "Bearer <redacted>", "user-agent": "bench", "x-request-id": "r-1"},
			}},
			"source":      map[string]any{"address": map[string]any{"socketAddress": map[string]any{"address": "10.0.0.7", "portValue": 51234}}},
			"destination": map[string]any{"address": map[string]any{"socketAddress": map[string]any{"address": "10.0.0.1", "portValue": 8080}}},
		},
		"parsed_path": segs, "parsed_query": map[string]any{}, "parsed_body": nil, "truncated_body": false,
		"version":    map[string]any{"ext_authz": "v3", "encoding": "protojson"},
		"request_id": "r-1",
		"token": map[string]any{
			"kind": "xbs_anonymous", "subject": "visitor-1", "issuer": "https://cognito-idp.dev.guestgate.invalid/dev-pool",
			"name": "guest", "email": "anonymous-w-demo@anonymous.dev.guestgate.invalid", "expires_at": 1900000000,
			"claims": map[string]any{
				"sub": "visitor-1", "custom:wid": "W-DEMO", "custom:entry": "kite", "custom:channel_id": "kite-7f3a",
				"custom:authorization_type": "XBS_ANONYMOUS", "token_use": "id", "aud": "dev-widget-client",
				"iss": "https://cognito-idp.dev.guestgate.invalid/dev-pool", "email_verified": false,
			},
		},
		"token_error": nil,
	})
	if err != nil {
		b.Fatal(err)
	}
	return v
}

// BenchmarkEvalShippedPolicyByKind is policy evaluation alone, the decision
// cache off, with the shipped policies/ and one request per kind of traffic
// of the load test's mix, in the shape ext_authz builds for this policy
// (only the input paths it reads). Each case checks its reason first, so a
// benchmark that drifts from the policy fails instead of measuring a denial.
func BenchmarkEvalShippedPolicyByKind(b *testing.B) {
	e, err := New(Options{Dir: "../policies", DecisionCacheSize: -1, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	const (
		kite = `"kind": "xbs_anonymous", "issuer": "https://cognito-idp.dev.guestgate.invalid/dev-pool", "subject": "visitor-1", "name": "guest",
			"email": "anonymous-w-demo@anonymous.dev.guestgate.invalid", "expires_at": 1900000000,
			"claims": {"sub": "visitor-1", "custom:wid": "W-DEMO", "custom:entry": "kite", "custom:channel_id": "kite-0001",
				"custom:authorization_type": "XBS_ANONYMOUS", "token_use": "id", "aud": "dev-widget-client", "email_verified": false}`
		link = `"kind": "xbs_anonymous", "issuer": "https://cognito-idp.dev.guestgate.invalid/dev-pool", "subject": "visitor-2", "name": "guest",
			"email": "anonymous-public-lobby@anonymous.dev.guestgate.invalid", "expires_at": 1900000000,
			"claims": {"sub": "visitor-2", "custom:entry": "public_link", "custom:channel_id": "public-lobby",
				"custom:authorization_type": "XBS_ANONYMOUS", "token_use": "id", "aud": "dev-widget-client", "email_verified": false}`
		guest = `"kind": "guest", "issuer": "dev-guest-issuer", "subject": "guest-user-1", "name": "Guest guest-user-1", "email": "", "expires_at": 1900000000,
			"claims": {"sub": "guest-user-1", "iss": "dev-guest-issuer", "name": "Guest guest-user-1", "exp": 1900000000}`
		access = `"kind": "access", "issuer": "https://guestgate.dev.invalid/access", "subject": "guest-rajww3lwv7cbcbahxpctdl323a",
			"name": "Guest guest-user-1", "email": "", "expires_at": 1900000000,
			"claims": {"sub": "guest-rajww3lwv7cbcbahxpctdl323a", "scope": "messaging calling people", "aud": "https://guestgate.dev.invalid/api",
				"guest_iss": "dev-guest-issuer", "guest_sub": "guest-user-1", "name": "Guest guest-user-1", "exp": 1900000000}`
		sat = `"kind": "secure_anonymous", "issuer": "https://guestgate.dev.invalid/sat", "subject": "visitor-3", "name": "", "email": "", "expires_at": 1900000000,
			"claims": {"sub": "visitor-3", "role": "launchpad_user", "scope": "launchpads/lp-0001", "account_id": "acct-1",
				"aud": "https://guestgate.dev.invalid/launchpads", "exp": 1900000000}`
	)
	for _, tc := range []struct {
		name, method, path, query, body, token, reason string
	}{
		{"xbs_kite_command", "POST", "conversations/channels/kite-0001/MarkReadCommand", `{}`, `{"messageId": "m-1"}`, kite, "allowed"},
		{"xbs_kite_get_token", "POST", "conversations/GetTokenCommand", `{}`, `null`, kite, "allowed"},
		{"xbs_link_command", "POST", "conversations/channels/public-lobby/JoinChannelCommand", `{}`, `null`, link, "allowed"},
		{"guest_login", "POST", "v1/jwt/login", `{}`, `null`, guest, "allowed"},
		{"access_messages", "GET", "v1/messages", `{"personId": ["regular-person-1"]}`, `null`, access, "allowed"},
		{"access_post_message", "POST", "v1/messages", `{}`, `{"toPersonId": "regular-person-2", "text": "hi"}`, access, "allowed"},
		{"sat_launchpad", "GET", "v1/launchpads/lp-0001/apps", `{}`, `null`, sat, "allowed"},
		{"deny_xbs_command", "POST", "conversations/ListChannelsCommand", `{}`, `null`, kite, "command_not_allowed"},
		{"deny_xbs_other_channel", "POST", "conversations/channels/support-1/MarkReadCommand", `{}`, `null`, kite, "channel_not_bound"},
		{"deny_guest_to_guest", "POST", "v1/messages", `{}`, `{"toPersonId": "guest-aaaaaaaaaaaaaaaaaaaaaaaaaa"}`, access, "guest_to_guest"},
		{"deny_sat_other_launchpad", "GET", "v1/launchpads/lp-other/apps", `{}`, `null`, sat, "scope_mismatch"},
		{"deny_missing_token", "POST", "conversations/GetTokenCommand", `{}`, `null`, `"none": null`, "missing_token"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			token := "{" + tc.token + "}"
			if tc.reason == "missing_token" {
				token = "null"
			}
			tokErr := "null"
			if token == "null" {
				tokErr = `"missing"`
			}
			segs, _ := json.Marshal(strings.Split(tc.path, "/"))
			doc := `{"attributes": {"request": {"http": {"method": "` + tc.method + `"}}}, "parsed_path": ` + string(segs) +
				`, "parsed_query": ` + tc.query + `, "parsed_body": ` + tc.body + `, "truncated_body": false, "token": ` + token +
				`, "token_error": ` + tokErr + `}`
			var v any
			if err := json.Unmarshal([]byte(doc), &v); err != nil {
				b.Fatal(err)
			}
			input, err := ast.InterfaceToValue(v)
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			res, err := e.Eval(ctx, input)
			if err != nil || !res.Defined {
				b.Fatalf("Eval = %v, %v", res, err)
			}
			if got := res.Value.(ast.Object).Get(ast.StringTerm("reason")); !got.Equal(ast.StringTerm(tc.reason)) {
				b.Fatalf("reason = %v, want %q: %v", got, tc.reason, res.Value)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := e.Eval(ctx, input); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
