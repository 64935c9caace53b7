package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/guestgate/guestgate/bench/workload"
	"github.com/guestgate/guestgate/internal/testsupport"
)

func TestMixWeighsEveryCaseOfTheWorkload(t *testing.T) {
	cases := workload.Cases(testsupport.Tokens{Kite: "k", Link: "l", Guest: "g", Access: "a", SAT: "s"}, 0)
	s, err := schedule(cases)
	if err != nil {
		t.Fatal(err)
	}
	count := map[string]int{}
	for _, i := range s {
		count[cases[i].Name]++
	}
	denied := 0
	for _, c := range cases {
		if count[c.Name] != weights[c.Name] || count[c.Name] == 0 {
			t.Errorf("%s: %d in the schedule, weight %d", c.Name, count[c.Name], weights[c.Name])
		}
		if !c.Allowed {
			denied += count[c.Name]
		}
	}
	// One request in ten is denied, as the README says.
	if denied*10 != len(s) {
		t.Errorf("%d of %d scheduled requests denied, want one in ten", denied, len(s))
	}
	if _, err := schedule(cases[1:]); err == nil {
		t.Error("a mix naming a case the workload lacks: no error")
	}
}

func TestSetMarkerTogglesTheMarkerWidgetAlone(t *testing.T) {
	path := filepath.Join(t.TempDir(), "widgets.json")
	if err := os.WriteFile(path, []byte(`{"widgets": {"W-DEMO": {"anonymous_sessions": true, "channels": ["support-1"]}}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, on := range []bool{true, false, true} {
		if err := setMarker(path, on); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var doc struct {
			Widgets map[string]struct {
				AnonymousSessions bool     `json:"anonymous_sessions"`
				Channels          []string `json:"channels"`
			} `json:"widgets"`
		}
		if err := json.Unmarshal(b, &doc); err != nil {
			t.Fatal(err)
		}
		if doc.Widgets[markerWidget].AnonymousSessions != on || !doc.Widgets["W-DEMO"].AnonymousSessions || len(doc.Widgets) != 2 {
			t.Fatalf("after setMarker(%v): %s", on, b)
		}
	}
	// The temporary file is renamed over the file, not left behind.
	if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) != 1 {
		t.Fatalf("%d files in the folder, want 1", len(entries))
	}
}
