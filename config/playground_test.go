package config

import (
	"strings"
	"testing"
)

func TestPlaygroundIsOffByDefaultAndOnInTheDevelopmentSetup(t *testing.T) {
	c, err := parse(t, "")
	if err != nil {
		t.Fatal(err)
	}
	if c.Playground.Enabled {
		t.Error("the playground is on in an empty config")
	}
	t.Chdir("..")
	dev, err := Development()
	if err != nil {
		t.Fatal(err)
	}
	if !dev.Playground.Enabled {
		t.Error("the playground is off in the development setup")
	}
}

func TestPlaygroundAdminHostsAcceptOnlyAHostAndAnOptionalPort(t *testing.T) {
	cases := []struct {
		host string
		ok   bool
	}{
		{"guestgate-admin.internal", true},
		{"guestgate-admin.internal:8282", true},
		{"localhost:9999", true},
		{"10.0.0.7", true},
		{"[::1]:8282", true},
		{"::1", true},
		{"", false},
		{"http://admin.example", false},
		{"admin.example/playground", false},
		{"*.example", false},
		{"admin.example:http", false},
		{"user@admin.example", false},
		{"-admin.example", false},
		{"admin..example", false},
	}
	for _, c := range cases {
		t.Run(c.host, func(t *testing.T) {
			_, err := parse(t, "playground:\n  admin_hosts: ['"+c.host+"']\n")
			if c.ok && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if !c.ok && (err == nil || !strings.Contains(err.Error(), "playground.admin_hosts[0]")) {
				t.Fatalf("error %v does not name playground.admin_hosts[0]", err)
			}
		})
	}
}
