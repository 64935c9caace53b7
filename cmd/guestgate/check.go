package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/guestgate/guestgate/config"
	"github.com/guestgate/guestgate/ext_authz"
)

// maxRequestFile bounds a CheckRequest file.
const maxRequestFile = 4 << 20

// checkCmd sends one CheckRequest to a running server (--addr), or decides
// it offline against the policies and tokens config, and prints the answer:
// offline, beside the shadow policy's (--shadow DIR, or the config's
// policy.shadow), why each policy decided (--explain) and the input
// document (--print-input), as text or, for CI, one JSON object.
func checkCmd(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "", "gRPC address of a running guestgate; none: decide offline")
	requestFile := fs.String("request", "", "CheckRequest as JSON, as Envoy sends it (- for standard input)")
	tokenFile := fs.String("token-file", "", "a file holding a token to send as Authorization: Bearer (- for standard input)")
	configPath := fs.String("config", "", "offline: config file; none: the development setup")
	timeout := fs.Duration("timeout", 5*time.Second, "how long to wait for the answer")
	shadowDir := fs.String("shadow", "", "offline: a candidate policy directory, decided beside the live policy")
	explain := fs.Bool("explain", false, "offline: print which rule lines decided, and the data they read")
	printInput := fs.Bool("print-input", false, "offline: print the input document the policy decides on")
	format := fs.String("format", "text", "text, or json: one JSON object (for CI)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *requestFile == "" {
		return errors.New("check: --request FILE is required")
	}
	if *format != "text" && *format != "json" {
		return fmt.Errorf("check: --format %q: want text or json", *format)
	}
	if *addr != "" && (*shadowDir != "" || *explain || *printInput) {
		return errors.New("check: --shadow, --explain and --print-input decide offline: leave out --addr")
	}
	if *requestFile == "-" && *tokenFile == "-" {
		return errors.New("check: --request and --token-file cannot both read standard input")
	}
	req, err := readCheckRequest(*requestFile, stdin)
	if err != nil {
		return err
	}
	if *tokenFile != "" {
		tok, err := readSmall(*tokenFile, stdin, 64<<10)
		if err != nil {
			return fmt.Errorf("check: --token-file: %w", err)
		}
		h := req.GetAttributes().GetRequest().GetHttp()
		if h == nil {
			return errors.New("check: the request has no attributes.request.http")
		}
		if h.Headers == nil {
			h.Headers = map[string]string{}
		}
		h.Headers["authorization"] = "Bearer " + strings.TrimSpace(string(tok))
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()

	if *addr != "" {
		conn, err := grpc.NewClient(*addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return fmt.Errorf("check: %w", err)
		}
		defer conn.Close()
		resp, err := authv3.NewAuthorizationClient(conn).Check(ctx, req)
		if err != nil {
			return fmt.Errorf("check: %s: %w", *addr, err)
		}
		return printCheckResponse(stdout, *format, resp, nil)
	}
	cfg, err := loadConfig(*configPath)
	if err != nil {
		return err
	}
	// The tool decides one request: it ships no decision logs.
	cfg.DecisionLog.OPA = nil
	if *shadowDir != "" {
		dir, err := filepath.Abs(*shadowDir)
		if err != nil {
			return fmt.Errorf("check: --shadow: %w", err)
		}
		cfg.Policy.Shadow = config.Shadow{Dir: dir, Queue: 1}
	}
	// Offline: no state store; an ownership effect is shown, not applied.
	s, err := newSidecar(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), sidecarOptions{Offline: true})
	if err != nil {
		return err
	}
	defer s.verifier.Load().Close()
	s.checker.SetEngine(s.engine)
	insp := s.checker.Inspect(ctx, req, ext_authz.InspectOptions{Explain: *explain, Input: *printInput})
	if *format == "json" {
		out := insp.Response(req)
		return printCheckResponse(stdout, *format, insp.Decision.CheckResponse(), &out)
	}
	printDecision(stdout, "decision:", insp.Decision)
	if sh := insp.Shadow; sh != nil {
		printDecision(stdout, "shadow:  ", sh)
		if insp.Agrees() {
			fmt.Fprintln(stdout, "the shadow policy agrees")
		} else {
			fmt.Fprintln(stdout, "the shadow policy DIFFERS")
		}
	}
	if insp.ExplainError != "" {
		fmt.Fprintf(stdout, "no explanation: %s\n", insp.ExplainError)
	}
	if x := insp.Explanation; x != nil {
		fmt.Fprintf(stdout, "why (policy %s):\n%s", shortRevision(x.Revision), x.Text())
	}
	if x := insp.ShadowExplanation; x != nil {
		fmt.Fprintf(stdout, "why (shadow policy %s):\n%s", shortRevision(x.Revision), x.Text())
	}
	if *printInput && insp.Input != nil {
		b, err := json.MarshalIndent(insp.Input, "", "  ")
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "input:\n%s\n", b)
	}
	return printCheckResponse(stdout, *format, insp.Decision.CheckResponse(), nil)
}

// printDecision is one line: the verdict, status, precise reason, token
// error and the revision that decided.
func printDecision(w io.Writer, label string, d *ext_authz.Decision) {
	fmt.Fprintf(w, "%s %s  status: %d  reason: %s", label, verdict(d.Allowed), d.Status, d.Reason)
	if d.TokenError != "" {
		fmt.Fprintf(w, "  token_error: %s", d.TokenError)
	}
	fmt.Fprintf(w, "  revision: %s\n", d.Revision)
	if o := d.Ownership; o != nil {
		pad := strings.Repeat(" ", len(label))
		switch {
		case d.OwnershipOutcome != ext_authz.OutcomeNotApplied:
			fmt.Fprintf(w, "%s ownership: %s channel %s: %s\n", pad, o.Need, o.Channel, d.OwnershipOutcome)
		case o.Need == ext_authz.NeedClaim:
			fmt.Fprintf(w, "%s needs: to claim channel %s (not applied offline: a running guestgate claims it in its state store, and denies when another visitor owns it)\n", pad, o.Channel)
		default:
			fmt.Fprintf(w, "%s needs: to own channel %s (not applied offline: a running guestgate asks its state store, and denies when this visitor does not own it)\n", pad, o.Channel)
		}
	}
}

func shortRevision(rev string) string {
	if len(rev) > 12 {
		return rev[:12]
	}
	return rev
}

// printCheckResponse prints the CheckResponse Envoy would get: as text, its
// protojson; as json, one object holding it (check_response) and, offline,
// the decision endpoint's answer (decision and the rest).
func printCheckResponse(w io.Writer, format string, resp *authv3.CheckResponse, out *ext_authz.DecideResponse) error {
	wire, err := protojson.MarshalOptions{Multiline: format == "text", Indent: "  "}.Marshal(resp)
	if err != nil {
		return err
	}
	if format == "text" {
		fmt.Fprintln(w, string(wire))
		return nil
	}
	doc := struct {
		*ext_authz.DecideResponse
		CheckResponse json.RawMessage `json:"check_response"`
	}{out, wire}
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return err
	}
	fmt.Fprintln(w, string(b))
	return nil
}

func verdict(allowed bool) string {
	if allowed {
		return "allowed"
	}
	return "denied"
}

func readCheckRequest(name string, stdin io.Reader) (*authv3.CheckRequest, error) {
	b, err := readSmall(name, stdin, maxRequestFile)
	if err != nil {
		return nil, fmt.Errorf("check: --request: %w", err)
	}
	req := &authv3.CheckRequest{}
	if err := (protojson.UnmarshalOptions{}).Unmarshal(b, req); err != nil {
		return nil, fmt.Errorf("check: %s is not a CheckRequest: %w", name, err)
	}
	return req, nil
}

func readSmall(name string, stdin io.Reader, max int64) ([]byte, error) {
	r := stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("larger than %d bytes", max)
	}
	return b, nil
}
