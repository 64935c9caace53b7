package state

import (
	"slices"
	"testing"
)

func TestSplitKeyUndoesJoinKeyAndRefusesWhatItDidNotWrite(t *testing.T) {
	for _, parts := range [][]string{{"a", "b", "c"}, {"", "x:y", "3:abc"}, {"ü\x00", ""}} {
		got, ok := splitKey(joinKey(parts...))
		if !ok || !slices.Equal(got, parts) {
			t.Errorf("splitKey(joinKey(%q)) = %q, %v", parts, got, ok)
		}
	}
	for _, s := range []string{"x", ":a", "-1:", "5:abc", "1:a2", "a:b"} {
		if got, ok := splitKey(s); ok {
			t.Errorf("splitKey(%q) = %q, want refused", s, got)
		}
	}
}
