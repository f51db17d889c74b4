package normalize

import (
	"net/http"
	"regexp"
	"strings"
	"testing"
)

var generatedID = regexp.MustCompile(`^[0-9a-f]{32}$`)

// TestRequestID checks which ids a trusted proxy may pass on; from anyone
// else every id, even a well-formed one, is replaced.
func TestRequestID(t *testing.T) {
	tests := []struct {
		name string
		in   []string // X-Request-Id header lines
		keep bool
	}{
		{"uuid", []string{"0f8fad5b-d9cb-469f-a165-70867728950e"}, true},
		{"all allowed characters", []string{"Az09._:-"}, true},
		{"one character", []string{"x"}, true},
		{"128 characters", []string{strings.Repeat("a", 128)}, true},
		{"first line wins", []string{"first", "second"}, true},
		{"missing", nil, false},
		{"empty", []string{""}, false},
		{"129 characters", []string{strings.Repeat("a", 129)}, false},
		{"space", []string{"a b"}, false},
		{"newline", []string{"a\nlevel=error"}, false},
		{"quote", []string{`a"b`}, false},
		{"slash", []string{"a/b"}, false},
		{"non-ASCII", []string{"café"}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			for _, v := range tc.in {
				h.Add("X-Request-Id", v)
			}
			if got := RequestID(h, false); !generatedID.MatchString(got) {
				t.Errorf("RequestID(untrusted) = %q; want a new 32-hex-digit id", got)
			}
			got := RequestID(h, true)
			if tc.keep {
				if got != tc.in[0] {
					t.Errorf("RequestID = %q; want %q kept", got, tc.in[0])
				}
				return
			}
			if !generatedID.MatchString(got) {
				t.Errorf("RequestID = %q; want a new 32-hex-digit id", got)
			}
		})
	}
}

func TestRequestIDIsRandom(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		id := RequestID(http.Header{"X-Request-Id": {"fixed"}}, false)
		if seen[id] {
			t.Fatalf("RequestID repeated %q", id)
		}
		seen[id] = true
	}
}
