package ext_authz

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/google/uuid"
	"google.golang.org/protobuf/encoding/protojson"
	"gopkg.in/yaml.v3"

	"github.com/guestgate/guestgate/config"
	"github.com/guestgate/guestgate/engine"
)

// vectorsDir holds answers a real opa-envoy-plugin gave (its README says
// how they were recorded): each case's policy, the CheckRequest Envoy
// sends and the CheckResponse, or gRPC error, opa-envoy answered.
const vectorsDir = "../testdata/opa-envoy/cases"

// TestOPAEnvoyFormatAnswersAsOPAEnvoyPlugin runs every recorded case
// through guestgate's gRPC Check in the opa-envoy input format and
// compares the answer with opa-envoy-plugin's: the status code and
// message, which http_response, its status, body, every header and its
// order within a key, the lists to remove, the dynamic metadata, or the
// gRPC error's code and message. Normalised on both sides, as the corpus
// says: decision_id (a fresh UUID per call) and the order of headers of
// different keys (opa-envoy ranges over a Go map). On guestgate's side
// only, appendAction of the headers sent upstream is dropped: guestgate
// sets OVERWRITE_IF_EXISTS_OR_ADD there (what Envoy does when it is unset)
// so that the upstream reads the policy's value, never a client's beside it.
func TestOPAEnvoyFormatAnswersAsOPAEnvoyPlugin(t *testing.T) {
	entries, err := os.ReadDir(vectorsDir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) < 35 {
		t.Fatalf("%d cases in %s, want the whole corpus", len(entries), vectorsDir)
	}
	for _, e := range entries {
		t.Run(e.Name(), func(t *testing.T) {
			dir := filepath.Join(vectorsDir, e.Name())
			got := vectorAnswer(t, dir)
			var want any
			if err := json.Unmarshal(readFile(t, filepath.Join(dir, "response.json")), &want); err != nil {
				t.Fatal(err)
			}
			want = asEnvoyDenial(want)
			normaliseAnswer(t, want, false)
			if !reflect.DeepEqual(got, want) {
				g, _ := json.MarshalIndent(got, "", "  ")
				w, _ := json.MarshalIndent(want, "", "  ")
				t.Fatalf("guestgate answered\n%s\nopa-envoy-plugin answered\n%s", g, w)
			}
		})
	}
}

// asEnvoyDenial is opa-envoy-plugin's answer as guestgate gives it: a gRPC
// error (a decision opa-envoy cannot read) becomes the denial Envoy makes
// of it with failure_mode_allow off (status_on_error's 403, no body), with
// opa-envoy's message as the status message. This is the one difference
// the opa-envoy format keeps: guestgate answers every failure as a denial,
// so that no Envoy setting lets a broken decision through.
func asEnvoyDenial(answer any) any {
	m, _ := answer.(map[string]any)
	e, ok := m["grpc_error"].(map[string]any)
	if !ok {
		return answer
	}
	return map[string]any{
		"status":         map[string]any{"code": float64(7), "message": e["message"]},
		"deniedResponse": map[string]any{"status": map[string]any{"code": "Forbidden"}},
	}
}

// vectorOptions are the plugin options a case's config.yaml changes.
type vectorOptions struct {
	Path      string `yaml:"path"`
	DryRun    bool   `yaml:"dry-run"`
	SkipParse bool   `yaml:"skip-request-body-parse"`
}

// vectorAnswer serves the case's policy as opa-envoy-plugin would (its
// options mapped to guestgate's keys), sends its request over gRPC and
// returns the answer as JSON values, normalised.
func vectorAnswer(t *testing.T, dir string) any {
	t.Helper()
	opts := vectorOptions{Path: "envoy/authz/allow"}
	if b, err := os.ReadFile(filepath.Join(dir, "config.yaml")); err == nil {
		if err := yaml.Unmarshal(b, &opts); err != nil {
			t.Fatal(err)
		}
	}
	query := "data." + strings.ReplaceAll(opts.Path, "/", ".")
	policyDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(policyDir, "policy.rego"), readFile(t, filepath.Join(dir, "policy.rego")), 0o600); err != nil {
		t.Fatal(err)
	}
	discard := slog.New(slog.NewTextHandler(io.Discard, nil))
	eng, err := engine.New(engine.Options{Dir: policyDir, Query: query, Logger: discard})
	if err != nil {
		t.Fatal(err)
	}
	doc := fmt.Sprintf("policy:\n  query: %s\ncheck:\n  input_format: opa-envoy\n  dry_run: %v\n  skip_request_body_parse: %v\n",
		query, opts.DryRun, opts.SkipParse)
	cfg, err := config.Parse([]byte(doc), policyDir)
	if err != nil {
		t.Fatal(err)
	}
	checker := New(Settings{Check: cfg.Check, DecisionLog: cfg.DecisionLog}, Options{Logger: discard})
	checker.SetEngine(eng)
	client := authv3.NewAuthorizationClient(loopback(t, checker.Register))

	req := &authv3.CheckRequest{}
	if err := protojson.Unmarshal(readFile(t, filepath.Join(dir, "request.json")), req); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := client.Check(ctx, req)
	if err != nil {
		t.Fatalf("Check answered a gRPC error, not a CheckResponse: %v", err)
	}
	var got any
	b, err := protojson.Marshal(resp)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	normaliseAnswer(t, got, true)
	return got
}

// normaliseAnswer puts an answer in the corpus's comparable form, in
// place: decision_id "<uuid>" (ours checked to be a UUID) and header
// lists sorted stably by key; ours loses appendAction upstream.
func normaliseAnswer(t *testing.T, answer any, ours bool) {
	t.Helper()
	m, _ := answer.(map[string]any)
	if md, ok := m["dynamicMetadata"].(map[string]any); ok {
		if id, ok := md["decision_id"].(string); ok && ours {
			if _, err := uuid.Parse(id); err != nil {
				t.Fatalf("decision_id %q is not a UUID", id)
			}
			md["decision_id"] = "<uuid>"
		}
	}
	for _, part := range []string{"okResponse", "deniedResponse"} {
		r, ok := m[part].(map[string]any)
		if !ok {
			continue
		}
		for _, list := range []string{"headers", "responseHeadersToAdd", "queryParametersToSet"} {
			entries, ok := r[list].([]any)
			if !ok {
				continue
			}
			key := func(i int) string {
				e := entries[i].(map[string]any)
				if h, ok := e["header"].(map[string]any); ok {
					return h["key"].(string)
				}
				return e["key"].(string)
			}
			sort.SliceStable(entries, func(i, j int) bool { return key(i) < key(j) })
			if ours && part == "okResponse" && list == "headers" {
				for _, e := range entries {
					if e.(map[string]any)["appendAction"] != "OVERWRITE_IF_EXISTS_OR_ADD" {
						t.Fatalf("a header upstream without OVERWRITE_IF_EXISTS_OR_ADD: %v", e)
					}
					delete(e.(map[string]any), "appendAction")
				}
			}
		}
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
