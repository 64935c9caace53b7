package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/open-policy-agent/opa/v1/bundle"
	"github.com/open-policy-agent/opa/v1/download"
	"github.com/open-policy-agent/opa/v1/keys"
	"github.com/open-policy-agent/opa/v1/logging"
	"github.com/open-policy-agent/opa/v1/plugins"
	bundleplugin "github.com/open-policy-agent/opa/v1/plugins/bundle"
	"github.com/open-policy-agent/opa/v1/plugins/rest"
)

// OPABundles takes the policy from an OPA bundle server instead of
// policy.dir, configured as OPA's own config configures it: the top-level
// services, bundles and keys sections (and persistence_directory) of an
// OPA config copy over unchanged, and are read by OPA's own parsers
// (docs/bundles.md). Empty bundles: the policy directory serves.
type OPABundles struct {
	// Services are the bundle servers, as OPA's services: a map by name
	// or a list of entries with a name (url, headers, credentials, tls,
	// response_header_timeout_seconds, ...).
	Services any `yaml:"services"`
	// Bundles are OPA's bundles: name -> service, resource, signing,
	// persist, polling, size_limit_bytes. guestgate serves exactly one.
	Bundles map[string]any `yaml:"bundles"`
	// Keys verify bundle signatures, as OPA's keys (name -> key,
	// algorithm, scope). With keys, every bundle needs a signing section:
	// an unsigned bundle is refused (OPA would accept it).
	Keys map[string]any `yaml:"keys"`
	// PersistenceDirectory is where a bundle with persist: true is kept
	// (bundles/<name>/bundle.tar.gz), read at start so that a restart
	// serves without the server. Empty: .opa in the working directory,
	// as OPA.
	PersistenceDirectory string `yaml:"persistence_directory"`
}

// Enabled says whether a bundle replaces the policy directory.
func (o OPABundles) Enabled() bool { return len(o.Bundles) > 0 }

// BundleSource is the one configured bundle, parsed by OPA's parsers.
type BundleSource struct {
	Name         string
	Client       rest.Client
	Resource     string
	Download     download.Config
	Verification *bundle.VerificationConfig
	// PersistDir is where the bundle is kept; empty without persist.
	PersistDir string
}

// Source parses the services, keys and bundle; logger is what OPA's REST
// client and downloader log through (nil: OPA's default). Each service's
// client reads at most MaxBundleDownloadBytes(maxRevisionBytes) of a
// download (bundleclient.go).
func (o OPABundles) Source(logger logging.Logger, maxRevisionBytes int64) (*BundleSource, error) {
	if !o.Enabled() {
		return nil, errors.New("no bundle configured")
	}
	if len(o.Bundles) > 1 {
		return nil, fmt.Errorf("%d bundles configured; guestgate serves exactly one", len(o.Bundles))
	}
	var ks map[string]*keys.Config
	if len(o.Keys) > 0 {
		raw, err := json.Marshal(o.Keys)
		if err != nil {
			return nil, fmt.Errorf("keys: %w", err)
		}
		if ks, err = keys.ParseKeysConfig(raw); err != nil {
			return nil, fmt.Errorf("keys: %w", err)
		}
	}
	clients, err := o.services(ks, logger, MaxBundleDownloadBytes(maxRevisionBytes))
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(clients))
	for name := range clients {
		names = append(names, name)
	}
	slices.Sort(names)
	raw, err := json.Marshal(o.Bundles)
	if err != nil {
		return nil, fmt.Errorf("bundles: %w", err)
	}
	// Periodic: manual has nothing to trigger it here, and OPA's parser
	// refuses a bundle asking for it.
	periodic := plugins.TriggerPeriodic
	parsed, err := bundleplugin.NewConfigBuilder().WithBytes(raw).WithServices(names).WithKeyConfigs(ks).WithTriggerMode(&periodic).Parse()
	if err != nil {
		return nil, fmt.Errorf("bundles: %w", err)
	}
	for name, src := range parsed.Bundles {
		if strings.HasPrefix(src.Resource, "file://") {
			return nil, fmt.Errorf("bundles.%s.resource: a file:// bundle is not served; use policy.dir for local files", name)
		}
		if len(ks) > 0 && src.Signing != nil && !src.Signing.SignatureRequired() {
			return nil, fmt.Errorf("bundles.%s.signing: keys are configured, so add a signing section (keyid) and unsigned bundles are refused", name)
		}
		out := &BundleSource{Name: name, Client: clients[src.Service], Resource: src.Resource, Download: src.Config, Verification: src.Signing}
		if src.Persist {
			dir := o.PersistenceDirectory
			if dir == "" {
				dir = ".opa"
			}
			out.PersistDir = filepath.Join(dir, "bundles", name)
		}
		return out, nil
	}
	return nil, errors.New("bundles: no bundle")
}

// services builds the REST clients as OPA does: services is a map by
// name or a list of entries that name themselves.
func (o OPABundles) services(ks map[string]*keys.Config, logger logging.Logger, maxDownload int64) (map[string]rest.Client, error) {
	opts := func(name string) []func(*rest.Client) {
		out := []func(*rest.Client){boundedLookup(maxDownload)}
		if logger != nil {
			out = append(out, rest.Logger(logger))
		}
		if name != "" {
			out = append(out, rest.Name(name))
		}
		return out
	}
	clients := map[string]rest.Client{}
	add := func(name string, v any) error {
		v, err := boundServiceConfig(v)
		if err != nil {
			return err
		}
		raw, err := json.Marshal(v)
		if err != nil {
			return err
		}
		c, err := rest.New(raw, ks, opts(name)...)
		if err != nil {
			return err
		}
		clients[c.Service()] = c
		return nil
	}
	switch s := o.Services.(type) {
	case nil:
		return nil, errors.New("services: a bundle needs a service to download it from")
	case map[string]any:
		for name, v := range s {
			if err := add(name, v); err != nil {
				return nil, fmt.Errorf("services.%s: %w", name, err)
			}
		}
	case []any:
		for i, v := range s {
			if err := add("", v); err != nil {
				return nil, fmt.Errorf("services[%d]: %w", i, err)
			}
		}
	default:
		return nil, errors.New("services: a map of services by name, or a list")
	}
	return clients, nil
}

func (o *OPABundles) resolvePaths(abs func(*string)) { abs(&o.PersistenceDirectory) }

func (o OPABundles) validate(add func(key, format string, args ...any), maxRevisionBytes int64) {
	if !o.Enabled() {
		if o.Services != nil || len(o.Keys) > 0 {
			add("bundles", "services and keys are set but no bundle: they serve nothing")
		}
		return
	}
	if _, err := o.Source(nil, maxRevisionBytes); err != nil {
		add("bundles", "%v", err)
	}
}
