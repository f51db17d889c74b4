package reqinfo

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"testing/iotest"
)

func TestHeaders(t *testing.T) {
	for _, n := range []int{0, 1, 4, 5, 9} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			var h Headers
			for i := range n {
				h.Set(fmt.Sprintf("X-H%d", i), "old")
			}
			for i := range n {
				h.Set(fmt.Sprintf("X-H%d", i), fmt.Sprint(i)) // replaces, does not add
			}
			if h.Len() != n {
				t.Fatalf("Len = %d, want %d", h.Len(), n)
			}
			dst := http.Header{"X-H0": {"client"}, "Other": {"kept"}}
			h.SetOn(dst)
			for i := range n {
				if got := dst.Values(fmt.Sprintf("X-H%d", i)); len(got) != 1 || got[0] != fmt.Sprint(i) {
					t.Errorf("X-H%d = %q, want [%d]", i, got, i)
				}
			}
			if dst.Get("Other") != "kept" {
				t.Error("an unrelated header was lost")
			}
		})
	}
}

func TestHeadersSets(t *testing.T) {
	var h Headers
	h.Set("x-forwarded-user", "alice") // configured names keep the operator's case
	for key, want := range map[string]bool{
		"X-Forwarded-User":  true,  // the key SetOn writes
		"x-forwarded-user":  false, // a key SetOn does not replace
		"X-Forwarded-Email": false,
	} {
		if got := h.Sets(key); got != want {
			t.Errorf("Sets(%q) = %v, want %v", key, got, want)
		}
	}
}

func TestHeadersSetAllocatesNothingForFew(t *testing.T) {
	info := &Info{}
	allocs := testing.AllocsPerRun(100, func() {
		info.Identity = Headers{}
		for _, k := range []string{"X-Forwarded-User", "X-Forwarded-Email", "X-Forwarded-Groups", "X-Sekisho-Assertion"} {
			info.Identity.Set(k, "v")
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations to record four headers, want 0", allocs)
	}
}

func TestBodyRemembersReadError(t *testing.T) {
	var b Body
	b.Wrap(io.NopCloser(strings.NewReader("ok")))
	if _, err := io.ReadAll(&b); err != nil || b.Err() != nil {
		t.Fatalf("a clean body: ReadAll error %v, Err %v", err, b.Err())
	}
	broken := errors.New("malformed chunked encoding")
	b.Wrap(io.NopCloser(io.MultiReader(strings.NewReader("ab"), iotest.ErrReader(broken))))
	if _, err := io.ReadAll(&b); !errors.Is(err, broken) || !errors.Is(b.Err(), broken) {
		t.Fatalf("a broken body: ReadAll error %v, Err %v", err, b.Err())
	}
	b.Wrap(io.NopCloser(strings.NewReader("")))
	if b.Err() != nil {
		t.Errorf("Wrap kept the earlier error %v", b.Err())
	}
}
