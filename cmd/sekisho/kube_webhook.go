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
	snap, file, err := config.LoadFile(*cfg, config.Options{})
	if err != nil {
		printConfigError(stderr, err)
		return 1
	}
	snap.Close()
	if file.Kube == nil || file.Kube.Webhook == nil {
		fmt.Fprintf(stderr, "sekisho kube webhook-config: %s has no kube.webhook section\n", *cfg)
		return 1
	}
	out, err := tokenreview.Kubeconfig(*file.Kube.Webhook, o)
	if err != nil {
		fmt.Fprintf(stderr, "sekisho kube webhook-config: %v\n", err)
		return 1
	}
	_, _ = stdout.Write(out)
	return 0
}
