package config

import (
	"strings"

	"github.com/sekisho/sekisho/internal/listen"
	"github.com/sekisho/sekisho/internal/secretref"
)

// fileSetting is one setting of the file whose value names a file the
// process reads, with its key path for problems.
type fileSetting struct {
	at []any
	p  *string
}

// fileSettings lists every setting of f that names a file sekisho reads:
// each may instead be a Kubernetes Secret reference
// (`sekisho+k8s://NAMESPACE/SECRET/KEY`). Settings that name a file or a
// directory sekisho writes or hands to a client library (kubeconfig, the
// ACME cache) are not files of this kind: see notFileSettings.
func fileSettings(f *File) []fileSetting {
	var out []fileSetting
	add := func(p *string, at ...any) { out = append(out, fileSetting{at: at, p: p}) }
	serverTLS := func(t *listen.ServerTLS, at ...any) {
		if t == nil {
			return
		}
		add(&t.CertFile, append(at, "cert_file")...)
		add(&t.KeyFile, append(at, "key_file")...)
		add(&t.ClientCAFile, append(at, "client_ca_file")...)
	}
	if t := f.Listen.TLS; t != nil {
		add(&t.CertFile, "listen", "tls", "cert_file")
		add(&t.KeyFile, "listen", "tls", "key_file")
	}
	if d := f.Decision; d != nil {
		serverTLS(d.TLS, "decision", "tls")
	}
	if k := f.Kube; k != nil {
		if k.Webhook != nil {
			serverTLS(k.Webhook.TLS, "kube", "webhook", "tls")
		}
		if k.Injector != nil {
			serverTLS(k.Injector.TLS, "kube", "injector", "tls")
		}
	}
	add(&f.Session.SecretFile, "session", "secret_file")
	for i := range f.Providers {
		add(&f.Providers[i].ClientSecretFile, "providers", i, "client_secret_file")
	}
	if f.APITokens != nil {
		add(&f.APITokens.File, "api_tokens", "file")
	}
	if a := f.UpstreamIdentity.Assertion; a != nil {
		add(&a.KeyFile, "upstream_identity", "assertion", "key_file")
	}
	for i := range f.JWT {
		j := &f.JWT[i]
		add(&j.HMACSecretFile, "jwt", i, "hmac_secret_file")
		add(&j.CAFile, "jwt", i, "ca_file")
		if k := j.Kubernetes; k != nil {
			add(&k.CAFile, "jwt", i, "kubernetes", "ca_file")
			add(&k.TokenFile, "jwt", i, "kubernetes", "token_file")
		}
	}
	for i := range f.Routes {
		if t := f.Routes[i].UpstreamTLS; t != nil {
			add(&t.CAFile, "routes", i, "upstream_tls", "ca_file")
			add(&t.CertFile, "routes", i, "upstream_tls", "cert_file")
			add(&t.KeyFile, "routes", i, "upstream_tls", "key_file")
		}
	}
	return out
}

// notFileSettings are the path settings a Secret cannot stand for, each
// with why.
func notFileSettings(f *File) []struct {
	fileSetting
	why string
} {
	type entry = struct {
		fileSetting
		why string
	}
	var out []entry
	kubeconfig := "a kubeconfig is how sekisho reaches the API server that Secrets are read from; give a path"
	if t := f.Listen.TLS; t != nil && t.ACME != nil {
		out = append(out, entry{fileSetting{[]any{"listen", "tls", "acme", "cache_dir"}, &t.ACME.CacheDir}, "the ACME cache is a directory sekisho writes; give a path"})
	}
	if k := f.Kube; k != nil {
		if k.Injector != nil {
			out = append(out, entry{fileSetting{[]any{"kube", "injector", "kubeconfig"}, &k.Injector.Kubeconfig}, kubeconfig})
		}
		if k.Resources != nil {
			out = append(out, entry{fileSetting{[]any{"kube", "resources", "kubeconfig"}, &k.Resources.Kubeconfig}, kubeconfig})
		}
	}
	return out
}

// isReference reports whether a path setting is written as a secret
// reference: `sekisho+SCHEME://…` (or an alias such as berglas-aws://).
// A relative file name that merely starts with "sekisho+" is a file.
func isReference(v string) bool {
	_, isRef, _ := secretref.Parse(v)
	return isRef && strings.Contains(v, "://")
}

// resolveSecretFiles replaces each file setting written as a Kubernetes
// Secret reference with the path of a file holding that key
// (Options.SecretFile), and reports references where they cannot stand.
// It reports false when it recorded a problem: the settings it could not
// resolve still hold references, which no later check should read as
// paths.
func (c *compiler) resolveSecretFiles(f *File) bool {
	before := len(c.problems)
	for _, s := range notFileSettings(f) {
		if isReference(*s.p) {
			c.addf(s.at, "%q: a Secret reference stands only for a file sekisho reads; %s", *s.p, s.why)
		}
	}
	kubeconfig := ""
	if f.Kube != nil && f.Kube.Resources != nil && !isReference(f.Kube.Resources.Kubeconfig) {
		kubeconfig = c.path(f.Kube.Resources.Kubeconfig)
	}
	for _, s := range fileSettings(f) {
		if !isReference(*s.p) {
			continue
		}
		ref, _, err := secretref.Parse(*s.p)
		switch {
		case err != nil:
			c.addf(s.at, "%v", err)
			continue
		case ref.Scheme != secretref.Kubernetes:
			c.addf(s.at, "%q: a file setting takes a path or a Kubernetes Secret (sekisho+k8s://NAMESPACE/SECRET/KEY); %s references are read by sekisho exec", ref.Raw, ref.Scheme)
			continue
		case ref.Key != "" || ref.Destination != "":
			c.addf(s.at, "%q: a file setting names the Secret's key as the last path segment (sekisho+k8s://NAMESPACE/SECRET/KEY), with no #KEY or ?destination", ref.Raw)
			continue
		case c.opts.SecretFile == nil:
			c.addf(s.at, "%q: Kubernetes Secrets are not read here; give a path", ref.Raw)
			continue
		}
		p, err := c.opts.SecretFile(c.opts.Context, kubeconfig, ref)
		if err != nil {
			c.addf(s.at, "%v", err)
			continue
		}
		*s.p = p
	}
	return len(c.problems) == before
}
