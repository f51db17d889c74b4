// Command crdgen writes the CustomResourceDefinition of sekisho's Route
// resource, generated from the Go types of the configuration file so the
// resource and the file cannot drift apart, into every place that ships
// it:
//
//	go run ./internal/kubeapi/crdgen
//
// A test (TestGenerated) fails when the committed files differ from what
// it would write.
package main

import (
	"fmt"
	"os"
	"path/filepath"
)

// Outputs are where the CRD is written, relative to the repository root:
// the plain file, the Helm chart's crds/ directory (installed before the
// chart's templates) and the rendered manifests.
var Outputs = []string{
	"deploy/crds/routes.sekisho.io.yaml",
	"deploy/helm/sekisho/crds/routes.sekisho.io.yaml",
	"deploy/manifests/crds/routes.sekisho.io.yaml",
}

func main() {
	root := "."
	if len(os.Args) > 1 {
		root = os.Args[1]
	}
	if err := write(root); err != nil {
		fmt.Fprintln(os.Stderr, "crdgen:", err)
		os.Exit(1)
	}
}

func write(root string) error {
	data, err := RouteCRDYAML()
	if err != nil {
		return err
	}
	for _, out := range Outputs {
		path := filepath.Join(root, out)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(path, data, 0o644); err != nil {
			return fmt.Errorf("write %s: %w", path, err)
		}
	}
	return nil
}
