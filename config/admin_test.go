package config

import (
	"strings"
	"testing"
)

func TestPprofIsOffByDefaultAndServedOnALoopbackAdminListenerOnly(t *testing.T) {
	c, err := parse(t, "")
	if err != nil {
		t.Fatal(err)
	}
	if c.Admin.Pprof {
		t.Error("admin.pprof is on in an empty config")
	}
	cases := []struct {
		admin string
		ok    bool
	}{
		{"127.0.0.1:8282", true},
		{"[::1]:0", true},
		{"localhost:8282", true},
		{"0.0.0.0:8282", false},
		{"10.0.0.7:8282", false},
		{":8282", false},
	}
	for _, tc := range cases {
		t.Run(tc.admin, func(t *testing.T) {
			c, err := parse(t, "listen:\n  admin: '"+tc.admin+"'\nadmin:\n  pprof: true\n")
			if tc.ok {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if !c.Admin.Pprof {
					t.Fatal("admin.pprof: true read as off")
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), "admin.pprof") {
				t.Fatalf("error %v does not name admin.pprof", err)
			}
		})
	}
	// Off, any admin address will do.
	if _, err := parse(t, "listen:\n  admin: '0.0.0.0:8282'\nadmin:\n  pprof: false\n"); err != nil {
		t.Fatalf("admin.pprof off on a public admin listener: %v", err)
	}
}
