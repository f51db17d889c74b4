package main

import (
	"flag"
	"fmt"
	"io"

	"github.com/sekisho/sekisho/internal/config"
	"github.com/sekisho/sekisho/internal/tokenreview"
)

func cmdKubeWebhookConfig(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("kube webhook-config", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := fs.String("config", "", "sekisho config file with a kube.webhook section")
	var o tokenreview.KubeconfigOptions
	fs.StringVar(&o.Server, "server", "", "the webhook URL as kube-apiserver reaches it (default: from kube.webhook.listen)")
	fs.StringVar(&o.CAFile, "ca-file", "", "CA that signed the webhook certificate (default: the certificate itself, when self-signed)")
	fs.StringVar(&o.ClientCertFile, "client-cert", "", "kube-apiserver's client certificate, for a webhook with tls.client_ca_file")
	fs.StringVar(&o.ClientKeyFile, "client-key", "", "the key of --client-cert")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *cfg == "" || fs.NArg() != 0 {
		fmt.Fprintln(stderr, "usage: sekisho kube webhook-config --config FILE [--server URL] [--ca-file F] [--client-cert F --client-key F]")
		return 2
	}
	file, done, ok := loadKubeSection("webhook-config", *cfg, "webhook", func(k *config.Kube) bool { return k.Webhook != nil }, stderr)
	if !ok {
		return 1
	}
	defer done()
	out, err := tokenreview.Kubeconfig(*file.Kube.Webhook, o)
	if err != nil {
		fmt.Fprintf(stderr, "sekisho kube webhook-config: %v\n", err)
		return 1
	}
	_, _ = stdout.Write(out)
	return 0
}

// loadKubeSection loads path for a `sekisho kube` command that needs only
// the decoded file (the snapshot is closed at once), and checks that it
// has the kube section named section (has reports it). done removes the
// files of the Kubernetes Secrets the file's settings reference, once the
// command has read them.
func loadKubeSection(cmd, path, section string, has func(*config.Kube) bool, stderr io.Writer) (file *config.File, done func(), ok bool) {
	opts, done := withSecrets(config.Options{})
	snap, file, err := config.LoadFile(path, opts)
	if err != nil {
		done()
		printConfigError(stderr, err)
		return nil, nil, false
	}
	snap.Close()
	if file.Kube == nil || !has(file.Kube) {
		done()
		fmt.Fprintf(stderr, "sekisho kube %s: %s has no kube.%s section\n", cmd, path, section)
		return nil, nil, false
	}
	return file, done, true
}
