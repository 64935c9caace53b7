// Package playground is guestgate's web page for trying it out: mint test
// tokens through the issuer routes (the page signs SAT requests in the
// browser, so the client secret never leaves it) and see the live policy's
// decision for a request through the admin decision endpoint.
//
// It is plain HTML, CSS and a little JavaScript, embedded in the binary: no
// build step, no external assets. The page calls only its own origin (the
// admin listener, which mounts the issuer routes and the decision endpoint
// too), under a strict Content Security Policy. It imports nothing of
// guestgate's: cmd hands it the catalog of providers and widgets.
package playground

import (
	"embed"
	"encoding/json"
	"net/http"
)

//go:embed static
var staticFiles embed.FS

// Prefix is where the page is served.
const Prefix = "/playground/"

// ContentSecurityPolicy allows the page's own script, style and calls and
// nothing else: no inline script, no other origin, no framing.
const ContentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; " +
	"connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'"

// Catalog is what the page offers to pick from. It holds no secret.
type Catalog struct {
	// MintingEnabled says whether the issuer routes answer at all.
	MintingEnabled bool       `json:"minting_enabled"`
	Providers      []Provider `json:"providers"`
	// Widgets are the widget ids whose anonymous sessions are on.
	Widgets []string `json:"widgets"`
	// PublicChannels are the channels a public-chat link may open.
	PublicChannels []string `json:"public_channels"`
	// GuestIssuers are the trusted guest issuers' ids ("iss").
	GuestIssuers []string `json:"guest_issuers"`
	// PolicyRevision is the policy deciding now.
	PolicyRevision string `json:"policy_revision"`
}

// Provider is one SAT provider, as the page lists it.
type Provider struct {
	ID          string `json:"id"`
	Account     string `json:"account"`
	Description string `json:"description"`
	Duration    string `json:"duration"`
	Role        string `json:"role"`
	Scope       string `json:"scope"`
}

// Options configure the page's handler.
type Options struct {
	// Catalog returns what the page offers (read on every request, so a
	// config or policy reload shows). Nil: an empty catalog.
	Catalog func() Catalog
	// BaseURL returns the scheme://host[:port] the copyable examples call
	// (the public listener), given the page's request. Nil or "": the
	// page's own origin.
	BaseURL func(r *http.Request) string
}

// Handler serves the page under Prefix: the page, its script and style,
// catalog.json and examples.json. Mount it at Prefix.
func Handler(o Options) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+Prefix+"{$}", file("static/index.html", "text/html; charset=utf-8"))
	mux.HandleFunc("GET "+Prefix+"playground.js", file("static/playground.js", "text/javascript; charset=utf-8"))
	mux.HandleFunc("GET "+Prefix+"playground.css", file("static/playground.css", "text/css; charset=utf-8"))
	mux.HandleFunc("GET "+Prefix+"catalog.json", func(w http.ResponseWriter, r *http.Request) {
		c := Catalog{}
		if o.Catalog != nil {
			c = o.Catalog()
		}
		for _, p := range []*[]string{&c.Widgets, &c.PublicChannels, &c.GuestIssuers} {
			if *p == nil {
				*p = []string{}
			}
		}
		if c.Providers == nil {
			c.Providers = []Provider{}
		}
		writeJSON(w, http.StatusOK, c)
	})
	mux.HandleFunc("GET "+Prefix+"examples.json", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		base := ""
		if o.BaseURL != nil {
			base = o.BaseURL(r)
		}
		if base == "" {
			base = "http://" + r.Host
		}
		ex, err := Examples(ExampleRequest{
			BaseURL:    base,
			AccountID:  q.Get("account_id"),
			ProviderID: q.Get("provider_id"),
			ClientID:   q.Get("client_id"),
			Body:       q.Get("body"),
		})
		if err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, ex)
	})
	mux.HandleFunc(Prefix, func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "the playground page is read-only", http.StatusMethodNotAllowed)
			return
		}
		http.NotFound(w, r)
	})
	return secured(mux)
}

// secured sets the headers every playground response carries.
func secured(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", ContentSecurityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		h.Set("Cross-Origin-Resource-Policy", "same-origin")
		h.Set("Cache-Control", "no-store")
		next.ServeHTTP(w, r)
	})
}

func file(name, contentType string) http.HandlerFunc {
	body, err := staticFiles.ReadFile(name)
	if err != nil {
		panic("playground: " + name + " is not embedded: " + err.Error())
	}
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", contentType)
		_, _ = w.Write(body)
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
