package main

import (
	"fmt"
	"io"
)

func cmdKubeLogin(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fmt.Fprintln(stderr, "sekisho kube login: not built yet")
	return 2
}

func cmdKubeSetup(args []string, stdout, stderr io.Writer) int {
	fmt.Fprintln(stderr, "sekisho kube setup: not built yet")
	return 2
}
