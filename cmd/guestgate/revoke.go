package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/guestgate/guestgate/ext_authz"
)

// revokeCmd adds an entry to the deny-list through a running guestgate's
// admin route (POST /v1/revocations): one replica takes it, every replica
// sharing its state store refuses the tokens it covers within the store's
// stale bound.
func revokeCmd(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("revoke", flag.ContinueOnError)
	fs.SetOutput(stderr)
	admin := fs.String("admin", "http://127.0.0.1:8282", "the admin listener's base URL")
	tokenFile := fs.String("token-file", "", "file holding the admin revocation token (admin.revocation_token_file)")
	tokenEnv := fs.String("token-env", "", "environment variable holding the admin revocation token")
	var req ext_authz.RevocationRequest
	fs.StringVar(&req.JTI, "jti", "", "revoke one token by its jti")
	fs.StringVar(&req.Subject, "subject", "", "revoke every token of a subject (with --issuer)")
	fs.StringVar(&req.Issuer, "issuer", "", "the issuer whose subject --subject is")
	fs.StringVar(&req.Widget, "widget", "", "revoke every token of a widget (custom:wid)")
	timeout := fs.Duration("timeout", 10*time.Second, "bound on the request")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("revoke: unexpected argument %q", fs.Arg(0))
	}
	var token string
	switch {
	case (*tokenFile == "") == (*tokenEnv == ""):
		return errors.New("revoke: give the admin revocation token with --token-file FILE or --token-env VAR")
	case *tokenFile != "":
		b, err := os.ReadFile(*tokenFile)
		if err != nil {
			return fmt.Errorf("revoke: --token-file: %w", err)
		}
		token = strings.TrimSpace(string(b))
	default:
		token = strings.TrimSpace(os.Getenv(*tokenEnv))
		if token == "" {
			return fmt.Errorf("revoke: --token-env: %s is not set", *tokenEnv)
		}
	}
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	hr, err := http.NewRequestWithContext(ctx, "POST", strings.TrimSuffix(*admin, "/")+ext_authz.RevocationsPath, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("revoke: --admin: %w", err)
	}
	hr.Header.Set("Authorization", "Bearer "+token)
	hr.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(hr)
	if err != nil {
		return fmt.Errorf("revoke: %w", err)
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return fmt.Errorf("revoke: reading the answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("revoke: %s: %s", resp.Status, bytes.TrimSpace(answer))
	}
	_, err = stdout.Write(answer)
	return err
}
