package kubetest

import (
	"strings"
	"testing"
)

// TestObjects decodes a stream as helm template writes it: documents
// separated by ---, comments, empty documents skipped; a broken document
// is an error naming its position.
func TestObjects(t *testing.T) {
	stream := "---\n# Source: a.yaml\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: x}\n---\n---\n# only a comment\n---\n{\"apiVersion\": \"v1\", \"kind\": \"Service\", \"metadata\": {\"name\": \"b\"}}\n"
	objs, err := Objects([]byte(stream))
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != 2 || Describe(objs[0]) != "ConfigMap x/a" || Describe(objs[1]) != "Service b" {
		var got []string
		for _, o := range objs {
			got = append(got, Describe(o))
		}
		t.Errorf("objects %q; want ConfigMap x/a and Service b", got)
	}
	if _, err := Objects([]byte("apiVersion: v1\nkind: ConfigMap\n---\nkind: [unclosed\n")); err == nil || !strings.Contains(err.Error(), "object 2") {
		t.Errorf("broken second document: error %v; want one naming object 2", err)
	}
}
