package ext_authz

import (
	"hash/maphash"
	"strings"
	"sync/atomic"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/guestgate/guestgate/engine"
	"github.com/guestgate/guestgate/internal/memo"
	"github.com/guestgate/guestgate/tokens"
)

// input.token: a verified token as the policy sees it, with the claims its
// revision can read.

// claimSet is what one policy revision can read of input.token.claims:
// the claims a token's input value keeps (engine.Snapshot.TokenClaims).
type claimSet struct {
	all  bool
	keys map[string]*ast.Term // the claims kept, with their key terms
	id   string               // tells claim sets apart: "" for all
}

func newClaimSet(rev engine.Snapshot) claimSet {
	names, all := rev.TokenClaims()
	if all {
		return claimSet{all: true}
	}
	cs := claimSet{keys: make(map[string]*ast.Term, len(names)), id: "\x00" + strings.Join(names, "\x00")}
	for _, n := range names {
		cs.keys[n] = ast.StringTerm(n)
	}
	return cs
}

// tokenForm is a token's input value for one claim set.
type tokenForm struct {
	id     string
	shared *engine.Shared
}

// tokenInput is input.token for a verified token, with the claims the
// plan's revision can read (the others cannot change its answer), built
// once per cached token and claim set and kept with it (with its
// decision-cache encoding): a token keeps the forms of the last two claim
// sets asked for (the serving revision's and a shadow's). It is nil when
// a claim cannot be made a policy value, kept or not: shown without it,
// the token would pass a policy that denies on a claim. (A plan of all
// claims, the policy reading them all, has id "".)
func tokenInput(t *tokens.Token, cs claimSet) *engine.Shared {
	forms, _ := memo.Load[[]tokenForm](t.Memo())
	for _, f := range forms {
		if f.id == cs.id {
			return f.shared
		}
	}
	s := buildTokenInput(t, cs)
	if s == nil {
		return nil
	}
	next := []tokenForm{{cs.id, s}}
	if len(forms) > 0 {
		next = append(next, forms[0])
	}
	memo.Store(t.Memo(), next)
	return s
}

func buildTokenInput(t *tokens.Token, cs claimSet) *engine.Shared {
	// Decoded from the payload here, once per token and claim set: the
	// token keeps no Go form of its claims.
	all := t.Claims()
	if all == nil {
		return nil
	}
	size := len(all)
	if !cs.all {
		size = min(size, len(cs.keys))
	}
	claims := ast.NewObjectWithCapacity(size)
	for name, c := range all {
		var t *ast.Term
		if s, ok := c.(string); ok {
			t = stringTerm(s)
		} else {
			v, err := ast.InterfaceToValue(c)
			if err != nil {
				return nil
			}
			t = ast.NewTerm(v)
		}
		if cs.all {
			claims.Insert(ast.StringTerm(name), t)
		} else if k, ok := cs.keys[name]; ok {
			claims.Insert(k, t)
		}
	}
	v := ast.NewObject(
		ast.Item(tokenKeys.kind, kindTerm(t.Kind)),
		ast.Item(tokenKeys.subject, ast.StringTerm(t.Subject)),
		ast.Item(tokenKeys.issuer, stringTerm(t.Issuer)),
		ast.Item(tokenKeys.name, stringTerm(t.Name)),
		ast.Item(tokenKeys.email, stringTerm(t.Email)),
		ast.Item(tokenKeys.expiresAt, ast.IntNumberTerm(int(t.ExpiresAt.Unix()))),
		ast.Item(tokenKeys.claims, ast.NewTerm(claims)),
	)
	return engine.NewShared(v)
}

// tokenKeys are the keys of input.token, shared by every token's value.
var tokenKeys = struct{ kind, subject, issuer, name, email, expiresAt, claims *ast.Term }{
	ast.StringTerm("kind"), ast.StringTerm("subject"), ast.StringTerm("issuer"), ast.StringTerm("name"),
	ast.StringTerm("email"), ast.StringTerm("expires_at"), ast.StringTerm("claims"),
}

// kindTerms are input.token.kind of each kind, shared by every token's value.
var kindTerms = func() map[tokens.Kind]*ast.Term {
	m := map[tokens.Kind]*ast.Term{}
	for _, k := range []tokens.Kind{tokens.KindXBSAnonymous, tokens.KindRegular, tokens.KindSecureAnonymous, tokens.KindGuest, tokens.KindAccess} {
		m[k] = ast.StringTerm(string(k))
	}
	return m
}()

func kindTerm(k tokens.Kind) *ast.Term {
	if t, ok := kindTerms[k]; ok {
		return t
	}
	return ast.StringTerm(string(k))
}

// internedTerms shares the string terms many tokens' values repeat (an
// issuer, an anonymous visitor's name "guest", a widget's synthetic email,
// custom:entry, a widget or public channel id): a direct-mapped table, so
// it stays bounded whatever the strings, and a string that does not repeat
// only takes a slot the next one takes back. Terms are never modified once
// built, so one term may sit in many values.
var internedTerms [4096]atomic.Pointer[ast.Term]

var internSeed = maphash.MakeSeed()

// maxInterned bounds the strings interned: longer ones are not the
// repeated names above.
const maxInterned = 96

// stringTerm returns a string term for s, shared with earlier tokens'
// values when the table holds it.
func stringTerm(s string) *ast.Term {
	if len(s) > maxInterned {
		return ast.StringTerm(s)
	}
	slot := &internedTerms[maphash.String(internSeed, s)%uint64(len(internedTerms))]
	if t := slot.Load(); t != nil && string(t.Value.(ast.String)) == s {
		return t
	}
	t := ast.StringTerm(s)
	slot.Store(t)
	return t
}
