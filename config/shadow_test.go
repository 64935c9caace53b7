package config

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestShadowSamplesEveryCheckUnlessToldOtherwise(t *testing.T) {
	cases := []struct {
		name, doc string
		enabled   bool
		sample    float64
	}{
		{"no shadow", "", false, 1},
		{"dir alone", "policy:\n  shadow:\n    dir: candidate\n", true, 1},
		{"a sample", "policy:\n  shadow:\n    dir: candidate\n    sample: 0.25\n", true, 0.25},
		{"sample zero is zero", "policy:\n  shadow:\n    dir: candidate\n    sample: 0\n", true, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := parse(t, c.doc)
			if err != nil {
				t.Fatal(err)
			}
			sh := cfg.Policy.Shadow
			if sh.Enabled() != c.enabled || sh.SampleRate() != c.sample {
				t.Fatalf("enabled %v sample %v, want %v %v", sh.Enabled(), sh.SampleRate(), c.enabled, c.sample)
			}
			if c.enabled && (!filepath.IsAbs(sh.Dir) || sh.Queue != DefaultShadowQueue) {
				t.Fatalf("dir %q queue %d: want an absolute path and the default queue", sh.Dir, sh.Queue)
			}
		})
	}
}

func TestBadShadowConfigNamesTheKey(t *testing.T) {
	cases := []struct{ name, doc, key string }{
		{"sample above one", "policy:\n  shadow:\n    dir: c\n    sample: 1.5\n", "policy.shadow.sample"},
		{"negative sample", "policy:\n  shadow:\n    dir: c\n    sample: -0.1\n", "policy.shadow.sample"},
		{"sample without dir", "policy:\n  shadow:\n    sample: 0.5\n", "policy.shadow.sample"},
		{"negative queue", "policy:\n  shadow:\n    dir: c\n    queue: -1\n", "policy.shadow.queue"},
		{"the live directory", "policy:\n  dir: p\n  shadow:\n    dir: ./p/\n", "policy.shadow.dir"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := parse(t, c.doc)
			if err == nil || !strings.Contains(err.Error(), c.key) {
				t.Fatalf("error %v, want one naming %s", err, c.key)
			}
		})
	}
}

// TestPolicyEqualComparesTheShadowsSettings: two loads of the same file are
// equal (a config reload must not think the policy changed), a changed
// sample is not.
func TestPolicyEqualComparesTheShadowsSettings(t *testing.T) {
	doc := "policy:\n  shadow:\n    dir: c\n    sample: 0.5\n"
	a, errA := parse(t, doc)
	b, errB := parse(t, doc)
	if errA != nil || errB != nil {
		t.Fatal(errA, errB)
	}
	b.Policy.Dir, b.Policy.Shadow.Dir = a.Policy.Dir, a.Policy.Shadow.Dir // parse uses a fresh directory each time
	if !a.Policy.Equal(b.Policy) {
		t.Fatal("two loads of the same policy section differ")
	}
	half := 0.25
	b.Policy.Shadow.Sample = &half
	if a.Policy.Equal(b.Policy) {
		t.Fatal("a changed sample compares equal")
	}
}
