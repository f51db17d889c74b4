package main

import (
	"fmt"
	"io"
)

func cmdKubeWebhookConfig(args []string, stdout, stderr io.Writer) int {
	fmt.Fprintln(stderr, "sekisho kube webhook-config: not built yet")
	return 2
}
