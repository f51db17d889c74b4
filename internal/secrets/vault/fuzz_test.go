package vault

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/sekisho/sekisho/internal/secrets"
)

// FuzzAnswer feeds arbitrary server answers (the server, or whatever
// answers at its address, is not trusted to be well formed) through
// decoding and the explanation of a missing secret: nothing panics, an
// answer without data is ErrNotFound, and an answer with data is returned
// as a JSON object with the same keys.
func FuzzAnswer(f *testing.F) {
	f.Add([]byte(`{"data":{"data":{"password":"p","user":"u"},"metadata":{"version":2}}}`), "")
	f.Add([]byte(`{"data":{"data":{"port":5432},"metadata":{"version":1}}}`), "")
	f.Add([]byte(`{"data":{"data":null,"metadata":{"version":3,"deletion_time":"2026-01-01T00:00:00Z"}}}`), "3")
	f.Add([]byte(`{"data":{"data":null,"metadata":{"destroyed":true}}}`), "")
	f.Add([]byte(`{"errors":["permission denied"]}`), "")
	f.Add([]byte(`{"data":{"data":{"a":{"b":[1,2,null]}},"metadata":{"version":"x"}}}`), "1")
	f.Add([]byte(`[]`), "")
	f.Fuzz(func(t *testing.T, answer []byte, version string) {
		body := decodeKV(bytes.NewReader(answer))
		if body.Data == nil || body.Data.Data == nil {
			if err := missing(body, "secret", "app", version); !errors.Is(err, secrets.ErrNotFound) {
				t.Fatalf("missing: %v", err)
			}
			return
		}
		out, err := object(body.Data.Data, describe("secret", "app", version, body.Data.Metadata.Version))
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal(out, &m); err != nil || len(m) != len(body.Data.Data) {
			t.Fatalf("answer %q returned as %q (%v)", answer, out, err)
		}
		for k := range body.Data.Data {
			if _, ok := m[k]; !ok {
				t.Fatalf("key %q lost", k)
			}
		}
	})
}

// FuzzSplitPath: any path either splits into a mount and a path that join
// back to it, with no empty, '.' or '..' segment, or is refused.
func FuzzSplitPath(f *testing.F) {
	for _, s := range []string{"secret/app", "secret/team/db", "secret", "/app", "secret/", "a//b", "a/../b", "kv/./x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		mount, path, err := splitPath(p)
		if err != nil {
			return
		}
		if mount+"/"+path != p || strings.Contains(mount, "/") {
			t.Fatalf("%q split into %q and %q", p, mount, path)
		}
		for _, seg := range strings.Split(p, "/") {
			if seg == "" || seg == "." || seg == ".." {
				t.Fatalf("%q accepted with segment %q", p, seg)
			}
		}
	})
}
