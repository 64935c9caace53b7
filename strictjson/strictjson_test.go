package strictjson_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/guestgate/guestgate/strictjson"
	"github.com/guestgate/guestgate/strictjson/strictjsontest"
)

// plainDecode is what encoding/json makes of doc: the value strictjson must
// return for every document it accepts.
func plainDecode(doc []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return v, nil
}

func TestDecodeAcceptsOnlyDocumentsThatKeepEveryRule(t *testing.T) {
	for _, c := range strictjsontest.Cases {
		t.Run(c.Name, func(t *testing.T) {
			got, err := strictjson.Decode([]byte(c.Doc))
			if c.Err != nil {
				var se *strictjson.Error
				if !errors.As(err, &se) || !errors.Is(err, c.Err) {
					t.Fatalf("error %v (%T), want a *strictjson.Error for %q", err, err, c.Err)
				}
				if got != nil {
					t.Fatalf("a refused document returned %v", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			want, err := plainDecode([]byte(c.Doc))
			if err != nil {
				t.Fatalf("encoding/json refuses what strictjson accepts: %v", err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("value %#v, encoding/json gives %#v", got, want)
			}
		})
	}
}

func TestCheckAgreesWithDecode(t *testing.T) {
	for _, c := range strictjsontest.Cases {
		if err := strictjson.Check([]byte(c.Doc)); !errors.Is(err, c.Err) || (err == nil) != (c.Err == nil) {
			t.Errorf("%s: Check = %v, want %v", c.Name, err, c.Err)
		}
	}
}

func TestDecodeObjectRefusesEveryOtherValue(t *testing.T) {
	for doc, kind := range map[string]string{`[]`: "an array", `"{}"`: "a string", `1`: "a number", `true`: "a boolean", `null`: "null"} {
		_, err := strictjson.DecodeObject([]byte(doc))
		if !errors.Is(err, strictjson.ErrNotObject) || !strings.Contains(err.Error(), kind) {
			t.Errorf("%s: %v, want %v saying %s", doc, err, strictjson.ErrNotObject, kind)
		}
	}
	obj, err := strictjson.DecodeObject([]byte(`{"a":[1]}`))
	if err != nil || len(obj) != 1 {
		t.Fatalf("an object: %v, %v", obj, err)
	}
	// The object's own faults come first.
	if _, err := strictjson.DecodeObject([]byte(`{"a":1,"a":2}`)); !errors.Is(err, strictjson.ErrDuplicate) {
		t.Fatalf("a duplicate in an object: %v", err)
	}
}

// TestErrorsNameTheFaultAndItsPlaceButNoValue: the message says which rule
// and where, names a duplicate member, and never repeats a value: values
// are where secrets are (a JWK's "d", a password in a body).
func TestErrorsNameTheFaultAndItsPlaceButNoValue(t *testing.T) {
	const secret = "hunter2-s3cret"
	cases := []struct {
		name, doc string
		says      []string
	}{
		{"duplicate", `{"k":"` + secret + `","k":"` + secret + `"}`, []string{`duplicate member "k"`, "offset 25"}},
		{"syntax after a value", `{"k":"` + secret + `" x}`, []string{"not JSON", "offset 22"}},
		{"syntax inside a value", `{"k":"` + secret + "\x01\"}", []string{"not JSON", "offset"}},
		{"ends early", `{"k":"` + secret + `"`, []string{"not JSON", "ends before the value does", "offset 21"}},
		{"empty", "  ", []string{"not JSON: empty"}},
		{"trailing", `{"k":"` + secret + `"} {"k":"` + secret + `"}`, []string{"data after the document", "offset 23"}},
		{"too deep", strings.Repeat(`{"`+secret+`":`, strictjson.MaxDepth+1) + "1" + strings.Repeat("}", strictjson.MaxDepth+1), []string{"nested too deep", "more than 64 levels"}},
		{"invalid UTF-8", `{"k":"` + secret + "\xff\"}", []string{"not UTF-8", "offset 20"}},
		{"not an object", `["` + secret + `"]`, []string{"not a JSON object", "an array"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := strictjson.DecodeObject([]byte(tc.doc))
			if err == nil {
				t.Fatal("accepted")
			}
			msg := err.Error()
			if strings.Contains(msg, secret) || strings.Contains(msg, "hunter") {
				t.Fatalf("the error repeats a value: %s", msg)
			}
			for _, s := range tc.says {
				if !strings.Contains(msg, s) {
					t.Errorf("error %q does not say %q", msg, s)
				}
			}
		})
	}
}

func TestDuplicateNameIsCutInTheError(t *testing.T) {
	name := strings.Repeat("é", 40) // 80 bytes
	_, err := strictjson.Decode([]byte(`{"` + name + `":1,"` + name + `":2}`))
	if !errors.Is(err, strictjson.ErrDuplicate) {
		t.Fatalf("error %v", err)
	}
	msg := err.Error()
	if strings.Contains(msg, name) || !strings.Contains(msg, strings.Repeat("é", 32)+"…") || !utf8.ValidString(msg) {
		t.Fatalf("the name is not cut to 64 bytes on a character boundary: %s", msg)
	}
}

// FuzzDecode holds strictjson to encoding/json: what it accepts is valid
// JSON in valid UTF-8 with the value encoding/json gives; what it refuses
// for its grammar encoding/json refuses too, so valid JSON is refused only
// for a duplicate member or its depth.
func FuzzDecode(f *testing.F) {
	for _, c := range strictjsontest.Cases {
		f.Add([]byte(c.Doc))
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		got, err := strictjson.Decode(doc)
		if err == nil {
			if !utf8.Valid(doc) || !json.Valid(doc) {
				t.Fatalf("%q: accepted, but it is not JSON in UTF-8", doc)
			}
			want, perr := plainDecode(doc)
			if perr != nil || !reflect.DeepEqual(got, want) {
				t.Fatalf("%q: value %#v, encoding/json gives %#v (%v)", doc, got, want, perr)
			}
			return
		}
		var se *strictjson.Error
		if !errors.As(err, &se) {
			t.Fatalf("%q: error %T %v is not a *strictjson.Error", doc, err, err)
		}
		switch se.Err {
		case strictjson.ErrInvalidUTF8:
			if utf8.Valid(doc) {
				t.Fatalf("%q: refused as not UTF-8", doc)
			}
		case strictjson.ErrSyntax, strictjson.ErrTrailing:
			if json.Valid(doc) {
				t.Fatalf("%q: refused as not JSON, encoding/json takes it", doc)
			}
		case strictjson.ErrDuplicate, strictjson.ErrTooDeep:
			// Found before the end: the rest may be anything, so there is
			// nothing to hold encoding/json to here. The grammar case above
			// already holds the converse: JSON encoding/json takes is
			// refused for these two rules alone.
		default:
			t.Fatalf("%q: refused for %v", doc, se.Err)
		}
	})
}
