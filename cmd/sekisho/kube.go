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
	case "help", "-h", "--help":
		fmt.Fprint(stdout, kubeUsage)
		return 0
	default:
		fmt.Fprintf(stderr, "sekisho kube: unknown command %q\n\n%s", args[0], kubeUsage)
		return 2
	}
}
