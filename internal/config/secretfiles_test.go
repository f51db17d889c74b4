package config

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/sekisho/sekisho/internal/secretref"
	"github.com/sekisho/sekisho/internal/testutil"
)

// pathTag matches the yaml names of settings that name a file or a
// directory.
var pathTag = regexp.MustCompile(`(^|_)(file|dir|kubeconfig)$`)

// fill sets every path setting reachable in v (allocating pointers and one
// element of each slice) to a distinct value, returned by key.
func fill(v reflect.Value, key string, set map[string]string) {
	switch v.Kind() {
	case reflect.Pointer:
		if v.Type().Elem().Kind() != reflect.Struct {
			return
		}
		v.Set(reflect.New(v.Type().Elem()))
		fill(v.Elem(), key, set)
	case reflect.Slice:
		if v.Type().Elem().Kind() != reflect.Struct {
			return
		}
		v.Set(reflect.MakeSlice(v.Type(), 1, 1))
		fill(v.Index(0), key+"[0]", set)
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			f := v.Type().Field(i)
			if !f.IsExported() {
				continue
			}
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			switch {
			case name == "-":
				continue
			case f.Anonymous && name == "":
				fill(v.Field(i), key, set)
				continue
			}
			k := strings.TrimPrefix(key+"."+name, ".")
			if f.Type.Kind() == reflect.String && pathTag.MatchString(name) {
				v.Field(i).SetString(k)
				set[k] = k
				continue
			}
			fill(v.Field(i), k, set)
		}
	}
}

// TestEveryFileSettingIsListed: every setting of the file that names a
// file or a directory is either a file setting a Secret may stand for, or
// listed as one it may not (with why), so a new setting cannot be missed.
func TestEveryFileSettingIsListed(t *testing.T) {
	var f File
	set := map[string]string{}
	fill(reflect.ValueOf(&f).Elem(), "", set)
	listed := map[string]string{}
	for _, s := range fileSettings(&f) {
		listed[*s.p] = keyString(s.at)
	}
	for _, s := range notFileSettings(&f) {
		listed[*s.p] = keyString(s.at)
	}
	for k := range set {
		at, ok := listed[k]
		if !ok {
			t.Errorf("%s names a file or directory but neither fileSettings nor notFileSettings lists it", k)
			continue
		}
		if at != k {
			t.Errorf("%s is reported at %s", k, at)
		}
	}
	for want := range map[string]bool{"listen.tls.cert_file": true, "routes[0].upstream_tls.key_file": true, "kube.injector.tls.client_ca_file": true, "jwt[0].kubernetes.token_file": true, "kube.resources.kubeconfig": true} {
		if _, ok := set[want]; !ok {
			t.Errorf("the walk did not find %s", want)
		}
	}
}

// TestSecretFileHook: a reference in a file setting is read through
// Options.SecretFile with kube.resources.kubeconfig (resolved against the
// file's directory), and the part is built from the file it returns; an
// error of the hook is a problem at the setting.
func TestSecretFileHook(t *testing.T) {
	dir := t.TempDir()
	tokens := testutil.TokenFile(t, "ci", "skt_hook_5f0e9c1d2b3a4f5e6d7c8b9a0f1e2d3c")
	type call struct{ kubeconfig, path string }
	var calls []call
	hook := func(_ context.Context, kubeconfig string, ref secretref.Ref) (string, error) {
		calls = append(calls, call{kubeconfig, ref.Path})
		if ref.Path == "gateway/tokens/tokens.yaml" {
			return tokens, nil
		}
		return "", fmt.Errorf("%s: Secret not found", ref.Raw)
	}
	src := `
listen: {http: ':0'}
api_tokens: {file: "sekisho+k8s://gateway/tokens/tokens.yaml"}
kube: {resources: {kubeconfig: kube/config}}
routes:
  - {name: a, match: {path_prefix: /}, to: builtin:echo, allow: [{groups: [staff]}]}
`
	s, err := Parse([]byte(src), "test.yaml", dir, Options{SecretFile: hook, Resources: func() []ResourceRoute { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !slices.Equal(calls, []call{{dir + "/kube/config", "gateway/tokens/tokens.yaml"}}) {
		t.Errorf("calls = %v", calls)
	}
	if !slices.Contains(s.WatchFiles, tokens) {
		t.Errorf("WatchFiles %v lacks the Secret's file %s: a rotation would not reload", s.WatchFiles, tokens)
	}
	if s.Authn.Tokens == nil {
		t.Fatal("no API tokens loaded")
	}

	src = strings.Replace(src, "tokens/tokens.yaml", "other/tokens.yaml", 1)
	_, err = Parse([]byte(src), "test.yaml", dir, Options{SecretFile: hook, Resources: func() []ResourceRoute { return nil }})
	var cerr *Error
	if !errors.As(err, &cerr) || len(cerr.Problems) != 1 || cerr.Problems[0].Key != "api_tokens.file" || !strings.Contains(cerr.Problems[0].Msg, "Secret not found") {
		t.Errorf("a hook error: %v", err)
	}
}
