// Package config is guestgate's one configuration document: the YAML a
// deployment writes, its defaults, and its validation.
//
// Every field below documents what happens when it is left empty; the
// zero value of a section is a working default. Relative paths are resolved
// against the directory of the config file. Secrets are never written in the
// file itself: they are read from a file or an environment variable.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// MaxFileSize bounds the config file: a larger one is refused, not read.
const MaxFileSize = 1 << 20

// Config is the whole configuration.
type Config struct {
	// Development marks the development setup: committed development keys
	// and secrets, precise denial reasons to clients, loopback listeners only.
	// It is refused on any other address.
	Development bool `yaml:"development"`

	Listen      Listen      `yaml:"listen"`
	Policy      Policy      `yaml:"policy"`
	Check       Check       `yaml:"check"`
	DecisionLog DecisionLog `yaml:"decision_log"`
	Tokens      Tokens      `yaml:"tokens"`
	Minting     Minting     `yaml:"minting"`
	// Playground is the admin listener's web page and decision endpoint,
	// off unless enabled (playground.go).
	Playground Playground `yaml:"playground"`
	// Issuer configures the minting routes, off unless enabled (issuer.go).
	Issuer    Issuer    `yaml:"issuer"`
	HTTPCheck HTTPCheck `yaml:"http_check"` // config/httpcheck.go
	Tracing   Tracing   `yaml:"tracing"`    // config/tracing.go
	State     State     `yaml:"state"`      // config/state.go
	// OPABundles are OPA's top-level services, bundles and keys: the
	// policy from a bundle server instead of policy.dir (bundles.go).
	OPABundles `yaml:",inline"`
	Admin      Admin   `yaml:"admin"`   // config/admin.go
	Runtime    Runtime `yaml:"runtime"` // config/runtime.go

	// Path is the file this config was read from ("" when built in code).
	Path string `yaml:"-"`
	// ReadAt is when Load began reading it and its files: a change after
	// that may not be in this config (Watch reloads for it).
	ReadAt time.Time `yaml:"-"`
}

// Listen holds the listener addresses and server bounds.
type Listen struct {
	// GRPC is the ext_authz gRPC listener. Empty: 127.0.0.1:9191.
	GRPC string `yaml:"grpc"`
	// HTTP is the public HTTP listener (issuer routes, JWKS, HTTP check).
	// Empty: 127.0.0.1:8181.
	HTTP string `yaml:"http"`
	// Admin is the admin HTTP listener (/healthz, /readyz, /metrics).
	// Empty: 127.0.0.1:8282.
	Admin string `yaml:"admin"`
	// MaxMessageBytes bounds a gRPC message in either direction. Empty:
	// 4 MiB; at least MessageRoom (256 KiB) more than check.max_body_bytes.
	//
	// It is chosen with tokens.max_size so that every request Envoy sends
	// is answered with a CheckResponse (a deny with its reason), not a gRPC
	// RESOURCE_EXHAUSTED. A CheckRequest holds the request's headers, its
	// path a second time (the path attribute beside the :path header) and
	// the body Envoy buffered: with Envoy's header bound left at its default
	// (max_request_headers_kb: 60 KiB) that is at most 2 × 60 KiB, the
	// attributes, and with_request_body.max_request_bytes; 4 MiB takes a
	// buffered body of up to 3.75 MiB. A token Envoy sends is in its
	// headers, and anything over tokens.max_size (8 KiB, at most 64 KiB) is
	// answered too_large: a 1 MiB token is too, should Envoy's header bound
	// be raised to carry it. Raise this bound with Envoy's: at least
	// 2 × max_request_headers_kb + max_request_bytes + 128 KiB (the
	// attributes). A message in flight may hold this much memory.
	MaxMessageBytes int `yaml:"max_message_bytes"`
	// ShutdownTimeout bounds the drain of in-flight checks on SIGTERM.
	// Empty: 10s.
	ShutdownTimeout Duration `yaml:"shutdown_timeout"`
}

// Policy says where the Rego lives and which rule decides.
type Policy struct {
	// Dir is the policy directory (Rego and data). Empty: "policies".
	Dir string `yaml:"dir"`
	// Query is the decision rule. Empty: data.guestgate.authz.decision.
	Query string `yaml:"query"`
	// Debounce groups file events before a reload. Empty: 50ms.
	Debounce Duration `yaml:"debounce"`
	// DecisionCache bounds the decision cache in entries: a repeated
	// decision is answered without evaluating the policy again, keyed on
	// exactly the input the policy can read (see engine/decisioncache.go).
	// It is off by itself for a policy whose answer could differ for the
	// same input (time.now_ns, http.send, ...). Empty: 10000; -1: off.
	DecisionCache int `yaml:"decision_cache"`
	// Evaluator is what evaluates a decision the cache does not answer:
	// "plan" (OPA's compiled plan, engine/plan; topdown answers whatever it
	// does not handle) or "opa" (OPA's topdown alone). Empty: plan.
	Evaluator string `yaml:"evaluator"`
	// Shadow is a candidate policy decided beside this one, off the
	// answer's path (shadow.go). Empty: none.
	Shadow Shadow `yaml:"shadow"`
	// MaxDataBytes bounds each data file of a revision (directory or
	// bundle), MaxRevisionBytes all its files together: a revision over
	// either is refused with the file and its size, and the last good one
	// keeps serving. Data takes some 20 times its size in memory once
	// loaded, and a reload holds two revisions. Empty: 4 MiB and 8 MiB,
	// which fit the documented 256 MiB container.
	MaxDataBytes     int64 `yaml:"max_data_bytes"`
	MaxRevisionBytes int64 `yaml:"max_revision_bytes"`
}

// Check shapes how a request becomes the policy's input.
type Check struct {
	// MaxBodyBytes bounds the body guestgate parses into input.parsed_body.
	// A larger body is not parsed and input.truncated_body is true.
	// Empty: 64 KiB. At most listen.max_message_bytes less 256 KiB, so a
	// body this large reaches the check over gRPC.
	MaxBodyBytes int `yaml:"max_body_bytes"`
	// Credentials says where to find the token, per route family. The first
	// entry whose path_prefix matches the request path is used. Empty: the
	// Authorization header with the Bearer scheme on every path.
	Credentials []Credential `yaml:"credentials"`
	// ForwardCredential keeps the credential in what goes upstream. Empty
	// (false): the header, cookie or query parameter is removed on an allow.
	ForwardCredential bool `yaml:"forward_credential"`
	// ShowCredentialToPolicy leaves the credential's raw value in
	// input.attributes. Empty: false (it is replaced by "<redacted>"),
	// true with input_format opa-envoy (ShowsCredential).
	ShowCredentialToPolicy *bool `yaml:"show_credential_to_policy"`
	// InputFormat is the shape of the input and of the answers:
	// "guestgate" (empty) or "opa-envoy", opa-envoy-plugin's (inputformat.go).
	InputFormat string `yaml:"input_format"`
	// SkipRequestBodyParse never parses the body, as opa-envoy-plugin's
	// skip-request-body-parse: with opa-envoy input there is no
	// parsed_body nor truncated_body; with guestgate's, parsed_body is null
	// and truncated_body true.
	SkipRequestBodyParse bool `yaml:"skip_request_body_parse"`
	// SkipUnparsableBody decides on a request whose body does not parse
	// (JSON, form, multipart syntax) as on one cut short: parsed_body null,
	// truncated_body true. Empty (false): bad_body. A body that is not
	// UTF-8 or has duplicate JSON keys is bad_body whatever this says.
	SkipUnparsableBody bool `yaml:"skip_unparsable_body"`
	// DryRun answers every policy decision of the gRPC check with an allow,
	// as opa-envoy-plugin's dry-run (input_format opa-envoy only).
	DryRun bool `yaml:"dry_run"`
	// PreciseReasons sends the policy's precise reason to clients. Empty:
	// only in the development setup; clients otherwise get a coarse reason.
	PreciseReasons *bool `yaml:"precise_reasons"`
}

// Credential is one place a token may be carried. Exactly one of Header,
// Cookie and Query is set.
type Credential struct {
	// PathPrefix is the route family ("" or "/" for every path).
	PathPrefix string `yaml:"path_prefix"`
	// Header is a request header name (case-insensitive).
	Header string `yaml:"header"`
	// Scheme is the header's auth scheme, matched case-insensitively; for
	// the authorization header empty means "Bearer". Use "-" for a raw value.
	Scheme string `yaml:"scheme"`
	// Cookie is a cookie name.
	Cookie string `yaml:"cookie"`
	// Query is a query parameter name (public-chat links often carry the
	// token there).
	Query string `yaml:"query"`
}

// DecisionLog configures the one-line-per-decision log.
type DecisionLog struct {
	// AllowSampleRate is the fraction of allows logged, 0 to 1. Empty: 0.01.
	AllowSampleRate *float64 `yaml:"allow_sample_rate"`
	// DenySampleRate is the fraction of denials logged, 0 to 1. Empty: 1.
	DenySampleRate *float64 `yaml:"deny_sample_rate"`
	// Full logs every decision, whatever the rates say.
	Full bool `yaml:"full"`
	// OPA also sends every decision, unsampled, in OPA's decision-log
	// event format to an HTTP endpoint (opalog.go). Empty: not sent.
	OPA *OPADecisionLog `yaml:"opa"`
}

// Duration is a time.Duration written as "90s" or "5m" in YAML.
type Duration time.Duration

// UnmarshalYAML reads a Go duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return fmt.Errorf("line %d: want a duration such as \"30s\"", n.Line)
	}
	v, err := time.ParseDuration(s)
	if err != nil || v < 0 {
		return fmt.Errorf("line %d: %q is not a duration such as \"30s\"", n.Line, s)
	}
	*d = Duration(v)
	return nil
}

// D returns the duration as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// Load reads, defaults and validates the config file at path. Every error
// names the key it is about.
func Load(path string) (*Config, error) {
	readAt := time.Now()
	doc, err := readDoc(path)
	if err != nil {
		return nil, err
	}
	c, err := Parse(doc, filepath.Dir(path))
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	c.Path, c.ReadAt = path, readAt
	return c, nil
}

// readDoc reads the config file at path, refusing one over MaxFileSize.
func readDoc(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	doc, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	if len(doc) > MaxFileSize {
		return nil, fmt.Errorf("config %s: larger than %d bytes", path, MaxFileSize)
	}
	return doc, nil
}

// Parse decodes a config document strictly (unknown keys are errors),
// resolves relative paths against baseDir, reads the secrets it names,
// fills defaults and validates.
func Parse(doc []byte, baseDir string) (*Config, error) {
	c, err := decode(doc, baseDir)
	if err != nil {
		return nil, err
	}
	if err := c.readSecrets(); err != nil {
		return nil, err
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// decode is Parse up to the secrets: the strict decode, the paths
// resolved against baseDir and the defaults filled.
func decode(doc []byte, baseDir string) (*Config, error) {
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(doc))
	dec.KnownFields(true)
	// An empty document is an all-defaults config.
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("yaml: %w", err)
	}
	c.resolvePaths(baseDir)
	c.applyDefaults()
	return &c, nil
}

func (c *Config) resolvePaths(base string) {
	abs := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(base, *p)
		}
	}
	abs(&c.Policy.Dir)
	if c.Policy.Dir == "" {
		c.Policy.Dir = filepath.Join(base, "policies")
	}
	c.Policy.Shadow.resolvePaths(abs)
	c.OPABundles.resolvePaths(abs)
	if c.DecisionLog.OPA != nil {
		c.DecisionLog.OPA.resolvePaths(abs)
	}
	for i := range c.Tokens.Issuers {
		abs(&c.Tokens.Issuers[i].JWKSFile)
		abs(&c.Tokens.Issuers[i].SecretFile)
	}
	c.Issuer.resolvePaths(abs)
	c.Admin.resolvePaths(abs)
	c.Tracing.resolvePaths(abs)
	c.State.resolvePaths(abs)
	for _, m := range []*MintedKind{&c.Minting.SAT, &c.Minting.Access, &c.Minting.XBS} {
		for i := range m.KeyFiles {
			abs(&m.KeyFiles[i])
		}
	}
}

// MessageRoom is what a gRPC CheckRequest holds besides the body, with
// Envoy's default header bound (max_request_headers_kb 60 KiB): the headers
// and the path a second time (2 × 60 KiB) and 128 KiB of attributes
// (addresses, metadata, a peer certificate), rounded up.
const MessageRoom = 256 << 10

// Defaults. Exported so the documentation and the tests name one value.
const (
	DefaultGRPC            = "127.0.0.1:9191"
	DefaultHTTP            = "127.0.0.1:8181"
	DefaultAdmin           = "127.0.0.1:8282"
	DefaultQuery           = "data.guestgate.authz.decision"
	DefaultMaxMessageBytes = 4 << 20
	DefaultMaxBodyBytes    = 64 << 10
	DefaultMaxTokenSize    = 8192
	DefaultCacheSize       = 10000
	// policy.max_data_bytes and policy.max_revision_bytes.
	DefaultMaxDataBytes     = 4 << 20
	DefaultMaxRevisionBytes = 8 << 20
)

func (c *Config) applyDefaults() {
	setS := func(p *string, v string) {
		if *p == "" {
			*p = v
		}
	}
	setS(&c.Listen.GRPC, DefaultGRPC)
	setS(&c.Listen.HTTP, DefaultHTTP)
	setS(&c.Listen.Admin, DefaultAdmin)
	if c.Listen.MaxMessageBytes == 0 {
		c.Listen.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if c.Listen.ShutdownTimeout == 0 {
		c.Listen.ShutdownTimeout = Duration(10 * time.Second)
	}
	setS(&c.Policy.Query, DefaultQuery)
	if c.Policy.Debounce == 0 {
		c.Policy.Debounce = Duration(50 * time.Millisecond)
	}
	c.Policy.Shadow.applyDefaults()
	if c.Policy.MaxDataBytes == 0 {
		c.Policy.MaxDataBytes = DefaultMaxDataBytes
	}
	if c.Policy.MaxRevisionBytes == 0 {
		c.Policy.MaxRevisionBytes = DefaultMaxRevisionBytes
	}
	if c.DecisionLog.OPA != nil {
		c.DecisionLog.OPA.applyDefaults()
	}
	if c.Check.MaxBodyBytes == 0 {
		c.Check.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if len(c.Check.Credentials) == 0 {
		c.Check.Credentials = []Credential{{Header: "authorization"}}
	}
	for i := range c.Check.Credentials {
		cr := &c.Check.Credentials[i]
		cr.Header = strings.ToLower(cr.Header)
		if cr.Header == "authorization" && cr.Scheme == "" {
			cr.Scheme = "Bearer"
		}
	}
	if c.Check.PreciseReasons == nil {
		v := c.Development
		c.Check.PreciseReasons = &v
	}
	if c.DecisionLog.AllowSampleRate == nil {
		v := 0.01
		c.DecisionLog.AllowSampleRate = &v
	}
	if c.DecisionLog.DenySampleRate == nil {
		v := 1.0
		c.DecisionLog.DenySampleRate = &v
	}
	setS(&c.Minting.AnonymousEmailDomain, "guestgate.invalid")
	c.Issuer.applyDefaults()
	c.HTTPCheck.applyDefaults()
	c.Tracing.applyDefaults()
	c.State.applyDefaults()
	// After the issuer's: a SAT issuer's lifetime is its providers'.
	c.applyTokenDefaults()
}

func (c *Config) readSecrets() error {
	if err := c.Issuer.readSecrets(); err != nil {
		return err
	}
	if err := c.State.readSecrets(); err != nil {
		return err
	}
	if err := c.Admin.readSecrets(); err != nil {
		return err
	}
	if c.DecisionLog.OPA != nil {
		if err := c.DecisionLog.OPA.readSecrets(); err != nil {
			return err
		}
	}
	for i := range c.Tokens.Issuers {
		ti := &c.Tokens.Issuers[i]
		var err error
		if ti.Secret, err = readSecret(fmt.Sprintf("tokens.issuers[%d]", i), ti.SecretFile, ti.SecretEnv); err != nil {
			return err
		}
	}
	return nil
}

// readSecret reads the secret named by a secret_file or secret_env pair
// (at most one set; neither: ""), trimmed of surrounding white space. key
// is the entry the pair belongs to, for the error.
func readSecret(key, file, env string) (string, error) {
	switch {
	case file != "" && env != "":
		return "", fieldErr(key+".secret_file", "set secret_file or secret_env, not both")
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fieldErr(key+".secret_file", "cannot read: %v", errors.Unwrap(err))
		}
		return strings.TrimSpace(string(b)), nil
	case env != "":
		v, ok := os.LookupEnv(env)
		if !ok || v == "" {
			return "", fieldErr(key+".secret_env", "environment variable %s is not set", env)
		}
		return strings.TrimSpace(v), nil
	}
	return "", nil
}

// FieldError is a validation error about one key of the document.
type FieldError struct {
	Key string // dotted path, e.g. tokens.issuers[1].kind
	Msg string
}

func (e *FieldError) Error() string { return e.Key + ": " + e.Msg }

func fieldErr(key, format string, args ...any) *FieldError {
	return &FieldError{Key: key, Msg: fmt.Sprintf(format, args...)}
}

// Validate checks the whole document and returns every problem found.
func (c *Config) Validate() error {
	var errs []error
	add := func(key, format string, args ...any) { errs = append(errs, fieldErr(key, format, args...)) }

	for key, addr := range map[string]string{"listen.grpc": c.Listen.GRPC, "listen.http": c.Listen.HTTP, "listen.admin": c.Listen.Admin} {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			add(key, "%q is not host:port", addr)
			continue
		}
		if c.Development && !IsLoopback(host) {
			add(key, "the development setup (committed development keys and secrets) listens on loopback only, not %q", addr)
		}
	}
	if c.Listen.MaxMessageBytes < MessageRoom || c.Listen.MaxMessageBytes > 64<<20 {
		add("listen.max_message_bytes", "must be between %d and 67108864", MessageRoom)
	} else if c.Check.MaxBodyBytes > c.Listen.MaxMessageBytes-MessageRoom {
		add("check.max_body_bytes", "must be at most listen.max_message_bytes less %d (the headers, the path and the attributes beside the body), %d", MessageRoom, c.Listen.MaxMessageBytes-MessageRoom)
	}
	if e := c.Policy.Evaluator; e != "" && e != "plan" && e != "opa" {
		add("policy.evaluator", "must be plan (the default) or opa")
	}
	if c.Policy.DecisionCache < -1 {
		add("policy.decision_cache", "must be -1 (off), 0 (the default) or a number of entries")
	}
	if c.Check.MaxBodyBytes < 0 || c.Check.MaxBodyBytes > 16<<20 {
		add("check.max_body_bytes", "must be between 0 and 16777216")
	}
	for i, cr := range c.Check.Credentials {
		key := fmt.Sprintf("check.credentials[%d]", i)
		n := 0
		for _, s := range []string{cr.Header, cr.Cookie, cr.Query} {
			if s != "" {
				n++
			}
		}
		if n != 1 {
			add(key, "set exactly one of header, cookie and query")
		}
		if cr.PathPrefix != "" && !strings.HasPrefix(cr.PathPrefix, "/") {
			add(key+".path_prefix", "must start with /")
		}
		if cr.Scheme != "" && cr.Header == "" {
			add(key+".scheme", "only a header has a scheme")
		}
	}
	for key, r := range map[string]*float64{"decision_log.allow_sample_rate": c.DecisionLog.AllowSampleRate, "decision_log.deny_sample_rate": c.DecisionLog.DenySampleRate} {
		if *r < 0 || *r > 1 {
			add(key, "must be between 0 and 1")
		}
	}
	c.validateTokens(add)
	c.validateRuntime(add)
	c.Policy.Shadow.validate(c.Policy.Dir, add)
	c.Check.validateInputFormat(add)
	if c.Policy.MaxRevisionBytes < 1<<10 || c.Policy.MaxRevisionBytes > 1<<30 {
		add("policy.max_revision_bytes", "must be between 1024 and 1073741824")
	}
	if c.Policy.MaxDataBytes < 1 || c.Policy.MaxDataBytes > c.Policy.MaxRevisionBytes {
		add("policy.max_data_bytes", "must be between 1 and policy.max_revision_bytes")
	}
	c.OPABundles.validate(add, c.Policy.MaxRevisionBytes)
	if c.DecisionLog.OPA != nil {
		c.DecisionLog.OPA.validate(add)
	}
	c.Playground.validate(add)
	c.Issuer.validate(c, add)
	c.Admin.validate(c.Listen.Admin, add)
	c.HTTPCheck.validate(add)
	c.Tracing.validate(add)
	c.State.validate(add)
	// Map iteration above is unordered; a stable order reads better.
	sort.Slice(errs, func(i, j int) bool { return errs[i].Error() < errs[j].Error() })
	return errors.Join(errs...)
}

// IsLoopback says whether host is a loopback name or address.
func IsLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func isLoopbackURL(u string) bool {
	rest, ok := strings.CutPrefix(u, "http://")
	if !ok {
		return false
	}
	hostport, _, _ := strings.Cut(rest, "/")
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		host = hostport
	}
	return IsLoopback(host)
}

// DevelopmentFile is the development setup, relative to the repository root.
const DevelopmentFile = "testdata/dev/guestgate.yaml"

// Development loads the development setup from the repository checkout in
// the working directory. It is what guestgate runs with no --config, and
// never a fallback when a config is given.
func Development() (*Config, error) {
	if _, err := os.Stat(DevelopmentFile); err != nil {
		return nil, fmt.Errorf("the development setup needs the repository's %s (run from the checkout, or pass --config): %w", DevelopmentFile, err)
	}
	c, err := Load(DevelopmentFile)
	if err != nil {
		return nil, err
	}
	if !c.Development {
		return nil, fmt.Errorf("%s: development: true is missing", DevelopmentFile)
	}
	return c, nil
}
