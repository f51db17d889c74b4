package config

import (
	"github.com/sekisho/sekisho/internal/authz"
	"github.com/sekisho/sekisho/internal/inject/injectconf"
	"github.com/sekisho/sekisho/internal/kubeuser"
	"github.com/sekisho/sekisho/internal/listen"
	"github.com/sekisho/sekisho/internal/snapshot"
	"github.com/sekisho/sekisho/internal/tokenreview/webhookconf"
)

// Kube is the Kubernetes section.
type Kube struct {
	// Webhook runs the TokenReview webhook kube-apiserver asks who a bearer
	// token belongs to.
	Webhook *KubeWebhook `yaml:"webhook"`
	// Injector runs the mutating admission webhook that wraps pods whose
	// environment holds secret references with `sekisho exec`.
	Injector *KubeInjector `yaml:"injector"`
	// Resources reads routes from sekisho.io Route objects, watched
	// through the API server, besides the file's.
	Resources *KubeResources `yaml:"resources"`
}

// KubeInjector configures the admission webhook; package injectconf owns
// the type and its rules.
type KubeInjector = injectconf.Config

// KubeWebhook configures the TokenReview webhook; the webhook stage owns
// the type and its rules.
type KubeWebhook = webhookconf.Config

// webhookOnly reports whether the file runs nothing but the Kubernetes
// webhooks (TokenReview, injector): no gateway listener, no routes, no
// decision service. Such a file needs neither listen nor routes.
func webhookOnly(f *File) bool {
	return f.Kube != nil && (f.Kube.Webhook != nil || f.Kube.Injector != nil) && f.Listen.HTTP == "" && f.Listen.HTTPS == "" &&
		f.Listen.TLS == nil && len(f.Routes) == 0 && f.Decision == nil
}

// checkKubeWebhook resolves the webhook's file paths and reports what its
// listener would refuse.
func (c *compiler) checkKubeWebhook(f *File) {
	if f.Kube == nil || f.Kube.Webhook == nil {
		return
	}
	w := f.Kube.Webhook
	if t := w.TLS; t != nil {
		t.CertFile, t.KeyFile, t.ClientCAFile = c.path(t.CertFile), c.path(t.KeyFile), c.path(t.ClientCAFile)
	}
	c.addProblems([]any{"kube", "webhook"}, webhookconf.Check(w))
	c.addWarnings([]any{"kube", "webhook"}, webhookconf.Warnings(w))
}

// checkKubeInjector resolves the injector's file paths and reports what
// it would refuse.
func (c *compiler) checkKubeInjector(f *File) {
	if f.Kube == nil || f.Kube.Injector == nil {
		return
	}
	in := f.Kube.Injector
	if t := in.TLS; t != nil {
		t.CertFile, t.KeyFile, t.ClientCAFile = c.path(t.CertFile), c.path(t.KeyFile), c.path(t.ClientCAFile)
	}
	if in.Kubeconfig != "" {
		in.Kubeconfig = c.path(in.Kubeconfig)
	}
	c.addProblems([]any{"kube", "injector"}, injectconf.Check(in))
}

// compileKubeWebhook compiles the mapping rules into the snapshot.
func (c *compiler) compileKubeWebhook(s *snapshot.Snapshot, f *File, env *authz.Env) {
	if f.Kube == nil || f.Kube.Webhook == nil {
		return
	}
	w := f.Kube.Webhook
	at := []any{"kube", "webhook"}
	if len(f.JWT) == 0 && f.APITokens == nil {
		c.addf(at, "the webhook verifies tokens with the jwt issuers and api_tokens: configure at least one")
	}
	users, problems, warnings := kubeuser.Compile(env, w.Config)
	c.addProblems(at, listenProblems(problems))
	c.addWarnings(at, listenProblems(warnings))
	s.KubeWebhook = &snapshot.KubeWebhook{Users: users, Audiences: w.Audiences}
}

// addWarnings reports a stage's warnings, located like problems: valid
// settings that deserve a second look.
func (c *compiler) addWarnings(section []any, ws []listen.Problem) {
	if c.opts.Warn == nil {
		return
	}
	for _, w := range ws {
		path := append(section[:len(section):len(section)], splitKey(w.Key)...)
		line := 0
		if n := nodeAt(c.root, path...); n != nil {
			line = n.Line
		}
		c.opts.Warn(Problem{File: c.name, Line: line, Key: keyString(path), Msg: w.Msg})
	}
}

func listenProblems(ps []kubeuser.Problem) []listen.Problem {
	out := make([]listen.Problem, len(ps))
	for i, p := range ps {
		out[i] = listen.Problem{Key: p.Key, Msg: p.Msg}
	}
	return out
}
