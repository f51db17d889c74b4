package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"strconv"

	"github.com/sekisho/sekisho/internal/config"
	"github.com/sekisho/sekisho/internal/inject"
)

func cmdKubeInjectorManifests(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("kube injector-manifests", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := fs.String("config", "", "sekisho config file with a kube.injector section")
	var o inject.ManifestOptions
	fs.StringVar(&o.Namespace, "namespace", "sekisho", "the namespace the injector runs in (never injected)")
	fs.StringVar(&o.Service, "service", "sekisho-injector", "the Service in front of the injector")
	fs.StringVar(&o.URL, "url", "", "the injector's URL instead of a Service (https://host:port/mutate)")
	caFile := fs.String("ca-file", "", "CA that signed the injector's certificate (default: kube.injector.tls.cert_file, for a self-signed certificate)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *cfg == "" || fs.NArg() != 0 {
		fmt.Fprintln(stderr, "usage: sekisho kube injector-manifests --config FILE [--namespace NS] [--service NAME | --url URL] [--ca-file F]")
		return 2
	}
	file, done, ok := loadKubeSection("injector-manifests", *cfg, "injector", func(k *config.Kube) bool { return k.Injector != nil }, stderr)
	if !ok {
		return 1
	}
	defer done()
	in := file.Kube.Injector
	var err error
	if o.CABundle, err = in.TLS.CABundle(*caFile); err != nil {
		fmt.Fprintf(stderr, "sekisho kube injector-manifests: CA bundle: %v\n", err)
		return 1
	}
	if _, port, err := net.SplitHostPort(in.Listen); err == nil {
		if p, err := strconv.Atoi(port); err == nil && p > 0 {
			o.Port = int32(p)
		}
	}
	objs, err := inject.Manifests(o)
	if err == nil {
		var out []byte
		if out, err = objs.YAML(); err == nil {
			_, _ = stdout.Write(out)
			return 0
		}
	}
	fmt.Fprintf(stderr, "sekisho kube injector-manifests: %v\n", err)
	return 1
}

func cmdKubeCopyBinary(args []string, stderr io.Writer) int {
	if len(args) != 1 {
		fmt.Fprintln(stderr, "usage: sekisho kube copy-binary DEST   (the injector's init container)")
		return 2
	}
	if err := inject.CopySelf(args[0]); err != nil {
		fmt.Fprintln(stderr, "sekisho kube", err)
		return 1
	}
	return 0
}
