package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"
)

// maxRequestFile bounds a CheckRequest file.
const maxRequestFile = 4 << 20

// checkCmd sends one CheckRequest to a running server (--addr), or decides
// it offline against the policies and tokens config, and prints the answer.
func checkCmd(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "", "gRPC address of a running guestgate; none: decide offline")
	requestFile := fs.String("request", "", "CheckRequest as JSON, as Envoy sends it (- for standard input)")
	tokenFile := fs.String("token-file", "", "a file holding a token to send as Authorization: Bearer (- for standard input)")
	configPath := fs.String("config", "", "offline: config file; none: the development setup")
	timeout := fs.Duration("timeout", 5*time.Second, "how long to wait for the answer")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *requestFile == "" {
		return errors.New("check: --request FILE is required")
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

	var resp *authv3.CheckResponse
	if *addr != "" {
		conn, err := grpc.NewClient(*addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return fmt.Errorf("check: %w", err)
		}
		defer conn.Close()
		resp, err = authv3.NewAuthorizationClient(conn).Check(ctx, req)
		if err != nil {
			return fmt.Errorf("check: %s: %w", *addr, err)
		}
	} else {
		cfg, err := loadConfig(*configPath)
		if err != nil {
			return err
		}
		s, err := newSidecar(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
		if err != nil {
			return err
		}
		defer s.verifier.Load().Close()
		s.checker.SetEngine(s.engine)
		d := s.checker.Decide(ctx, req)
		fmt.Fprintf(stdout, "decision: %s  status: %d  reason: %s", verdict(d.Allowed), d.Status, d.Reason)
		if d.TokenError != "" {
			fmt.Fprintf(stdout, "  token_error: %s", d.TokenError)
		}
		fmt.Fprintf(stdout, "  revision: %s\n", d.Revision)
		resp = d.CheckResponse()
	}
	out, err := protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(resp)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, string(out))
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
