// Package sekisho holds the files embedded into the binary: the quickstart
// configuration the gateway runs when no --config is given.
package sekisho

import _ "embed"

// QuickstartConfig is examples/quickstart.yaml.
//
//go:embed examples/quickstart.yaml
var QuickstartConfig []byte
