package main

import (
	"fmt"
	"io"
)

const kubeUsage = `usage:
  sekisho kube webhook-config --config FILE [--server URL] [--client-cert F --client-key F]
                                  print the kubeconfig for kube-apiserver's --authentication-token-webhook-config-file
  sekisho kube login [flags]      kubectl exec credential plugin: sign in with a browser (or a device code)
  sekisho kube setup [flags]      print the kubectl config lines that use 'sekisho kube login'
  sekisho kube injector-manifests --config FILE [--namespace NS] [--service NAME | --url URL] [--ca-file F]
                                  print the injector's webhook, policy and RBAC manifests
  sekisho kube copy-binary DEST   copy this executable to DEST (the injector's init container)
`

// cmdKube dispatches the Kubernetes subcommands.
func cmdKube(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, kubeUsage)
		return 2
	}
	switch args[0] {
	case "webhook-config":
		return cmdKubeWebhookConfig(args[1:], stdout, stderr)
	case "login":
		return cmdKubeLogin(args[1:], stdin, stdout, stderr)
	case "setup":
		return cmdKubeSetup(args[1:], stdout, stderr)
	case "injector-manifests":
		return cmdKubeInjectorManifests(args[1:], stdout, stderr)
	case "copy-binary":
		return cmdKubeCopyBinary(args[1:], stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, kubeUsage)
		return 0
	default:
		fmt.Fprintf(stderr, "sekisho kube: unknown command %q\n\n%s", args[0], kubeUsage)
		return 2
	}
}
