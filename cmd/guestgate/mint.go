package main

import (
	"bufio"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/guestgate/guestgate/config"
	"github.com/guestgate/guestgate/issuer"
	"github.com/guestgate/guestgate/tokens"
	"github.com/guestgate/guestgate/wiring"
)

const mintUsage = `usage:
  guestgate mint guest --issuer ISS --sub SUB [--name NAME] [--ttl 1h] SECRET
  guestgate mint sat --account ID --provider ID [--first-name N] [--last-name N] [--email E] [--config FILE]
  guestgate mint access --issuer ISS --sub SUB [--name NAME] [--config FILE]
  guestgate mint xbs-anonymous (--widget ID [--channel ID | --unbound] | --public-channel ID)   (development setup only)
  guestgate sign-request --client-id ID [--nonce N | --random-nonce] [--timestamp UNIX] SECRET

SECRET is --secret-env VAR, --secret-file FILE or --secret-stdin: never a flag's value.
sat, access and xbs-anonymous sign with the keys of the config (none: the development setup).
`

// maxSecret bounds a secret read from a file or standard input.
const maxSecret = 4096

// secretSource is where a tool reads a secret: an environment variable, a
// file or standard input, so that it never shows in a process listing or a
// shell history.
type secretSource struct {
	env, file string
	stdin     bool
}

func (s *secretSource) flags(fs *flag.FlagSet) {
	fs.StringVar(&s.env, "secret-env", "", "read the secret from this environment variable")
	fs.StringVar(&s.file, "secret-file", "", "read the secret from this file")
	fs.BoolVar(&s.stdin, "secret-stdin", false, "read the secret from standard input (its first line)")
}

func (s *secretSource) read(stdin io.Reader) (string, error) {
	n := 0
	for _, set := range []bool{s.env != "", s.file != "", s.stdin} {
		if set {
			n++
		}
	}
	if n != 1 {
		return "", errors.New("give the secret with exactly one of --secret-env, --secret-file and --secret-stdin")
	}
	var v string
	switch {
	case s.env != "":
		v = os.Getenv(s.env)
	case s.file != "":
		b, err := readSmall(s.file, nil, maxSecret)
		if err != nil {
			return "", fmt.Errorf("--secret-file: %w", err)
		}
		v = string(b)
	default:
		line, err := bufio.NewReader(io.LimitReader(stdin, maxSecret)).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return "", fmt.Errorf("--secret-stdin: %w", err)
		}
		v = line
	}
	v = strings.TrimSpace(v)
	if v == "" {
		return "", errors.New("the secret is empty")
	}
	return v, nil
}

// mintCmd mints one token and prints it.
func mintCmd(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		fmt.Fprint(stderr, mintUsage)
		return flag.ErrHelp
	}
	kind, args := args[0], args[1:]
	fs := flag.NewFlagSet("mint "+kind, flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "", "config file (YAML); none: the development setup")
	var (
		src                            secretSource
		iss, sub, name                 string
		ttl                            time.Duration
		account, provider              string
		firstName, lastName, email     string
		widget, publicChannel, channel string
		unbound                        bool
	)
	switch kind {
	case "guest":
		src.flags(fs)
		fs.StringVar(&iss, "issuer", "", "the guest issuer id (iss); required")
		fs.StringVar(&sub, "sub", "", "the guest's id: letters, digits and hyphens; required")
		fs.StringVar(&name, "name", "", "the guest's display name")
		fs.DurationVar(&ttl, "ttl", time.Hour, "how long the token is valid")
	case "sat":
		fs.StringVar(&account, "account", "", "the account id; required")
		fs.StringVar(&provider, "provider", "", "the provider id (issuer.providers); required")
		fs.StringVar(&firstName, "first-name", "", "first_name claim")
		fs.StringVar(&lastName, "last-name", "", "last_name claim")
		fs.StringVar(&email, "email", "", "email claim")
	case "access":
		fs.StringVar(&iss, "issuer", "", "the guest issuer id (a guest issuer of the config); required")
		fs.StringVar(&sub, "sub", "", "the guest's id; required")
		fs.StringVar(&name, "name", "", "the guest's display name")
	case "xbs-anonymous":
		fs.StringVar(&widget, "widget", "", "a widget session: the widget id")
		fs.StringVar(&publicChannel, "public-channel", "", "a public-chat link: the channel id")
		fs.StringVar(&channel, "channel", "", "the Kite channel of a widget session; none: a fresh one")
		fs.BoolVar(&unbound, "unbound", false, "the identity provider's own token of the widget: no custom:entry, no custom:channel_id")
	default:
		fmt.Fprintf(stderr, "guestgate mint: unknown kind %q\n%s", kind, mintUsage)
		return flag.ErrHelp
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("mint %s: unexpected argument %q (secrets are never arguments: use --secret-env, --secret-file or --secret-stdin)", kind, fs.Arg(0))
	}

	if kind == "guest" {
		b64, err := src.read(stdin)
		if err != nil {
			return fmt.Errorf("mint guest: %w", err)
		}
		secret, err := tokens.DecodeGuestSecret(b64)
		if err != nil {
			return fmt.Errorf("mint guest: %w", err)
		}
		tok, err := tokens.MintGuest(secret, iss, sub, name, time.Now().Add(ttl))
		if err != nil {
			return fmt.Errorf("mint guest: %w", err)
		}
		fmt.Fprintln(stdout, tok)
		return nil
	}

	cfg, err := loadConfig(*configPath)
	if err != nil {
		return err
	}
	// As serve and validate do: a token signed with a published key is
	// not minted for a config that is not the development setup.
	signer, err := wiring.Signer(cfg)
	if err != nil {
		return fmt.Errorf("mint %s: %w", kind, err)
	}
	if signer == nil {
		return fmt.Errorf("mint %s: the config has no minting keys", kind)
	}
	var issued tokens.Issued
	switch kind {
	case "sat":
		p, ok := findProvider(cfg, provider)
		if !ok {
			return fmt.Errorf("mint sat: --provider %q is not in issuer.providers", provider)
		}
		if p.Account != account {
			return fmt.Errorf("mint sat: provider %q belongs to account %q, not %q", p.ID, p.Account, account)
		}
		issued, err = signer.MintSAT(tokens.SATClaims{AccountID: account, ProviderID: p.ID, Role: p.Role, Scope: p.Scope,
			TTL: p.Duration.D(), FirstName: firstName, LastName: lastName, Email: email})
	case "access":
		var secret string
		for _, ti := range cfg.Tokens.Issuers {
			if ti.Kind == "guest" && ti.Issuer == iss {
				secret = ti.Secret
			}
		}
		if secret == "" {
			return fmt.Errorf("mint access: --issuer %q is not a guest issuer of the config", iss)
		}
		raw, err := tokens.DecodeGuestSecret(secret)
		if err != nil {
			return fmt.Errorf("mint access: %w", err)
		}
		issued, err = signer.MintAccess(tokens.AccessClaims{GuestIssuer: iss, GuestSubject: sub, Name: name, Generation: tokens.SecretGeneration(raw)})
		if err != nil {
			return err
		}
	case "xbs-anonymous":
		// XBS anonymous tokens come from a user pool in production; guestgate
		// makes them by hand only with the published development keys.
		if !cfg.Development {
			return errors.New("mint xbs-anonymous: only with the development setup (development: true): these tokens are never minted by hand")
		}
		c := tokens.XBSClaims{Entry: tokens.EntryKite, WidgetID: widget, ChannelID: channel}
		switch {
		case widget != "" && publicChannel != "":
			return errors.New("mint xbs-anonymous: --widget or --public-channel, not both")
		case publicChannel != "":
			c = tokens.XBSClaims{Entry: tokens.EntryPublicLink, ChannelID: publicChannel}
		case widget == "":
			return errors.New("mint xbs-anonymous: --widget or --public-channel required")
		case unbound && channel != "":
			return errors.New("mint xbs-anonymous: --unbound takes no --channel")
		case unbound:
			c = tokens.XBSClaims{Entry: tokens.EntryUnbound, WidgetID: widget}
		case channel == "":
			c.ChannelID = "kite-" + strings.ToLower(rand.Text())
		}
		issued, err = signer.MintXBSAnonymous(c)
	}
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, issued.Token)
	return nil
}

func findProvider(cfg *config.Config, id string) (config.Provider, bool) {
	for _, p := range cfg.Issuer.Providers {
		if p.ID == id {
			return p, true
		}
	}
	return config.Provider{}, false
}

// signRequestCmd prints the X-Frame-* headers of a SAT API request.
func signRequestCmd(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("sign-request", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var src secretSource
	src.flags(fs)
	clientID := fs.String("client-id", "", "the integration's client id; required")
	nonce := fs.String("nonce", "", "X-Frame-Nonce, signed with the request")
	randomNonce := fs.Bool("random-nonce", false, "send a fresh random X-Frame-Nonce")
	timestamp := fs.Int64("timestamp", 0, "X-Frame-Timestamp in Unix seconds; none: now")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("sign-request: unexpected argument %q (the secret is never an argument)", fs.Arg(0))
	}
	if *clientID == "" {
		return errors.New("sign-request: --client-id required")
	}
	if *randomNonce {
		if *nonce != "" {
			return errors.New("sign-request: --nonce or --random-nonce, not both")
		}
		*nonce = strings.ToLower(rand.Text())
	}
	secret, err := src.read(stdin)
	if err != nil {
		return fmt.Errorf("sign-request: %w", err)
	}
	ts := *timestamp
	if ts == 0 {
		ts = time.Now().Unix()
	}
	tsText := strconv.FormatInt(ts, 10)
	fmt.Fprintf(stdout, "%s: %s\n%s: %s\n", issuer.HeaderClientID, *clientID, issuer.HeaderTimestamp, tsText)
	if *nonce != "" {
		fmt.Fprintf(stdout, "%s: %s\n", issuer.HeaderNonce, *nonce)
	}
	fmt.Fprintf(stdout, "%s: %s\n", issuer.HeaderSignature, issuer.Sign([]byte(secret), tsText, *clientID, *nonce))
	return nil
}
