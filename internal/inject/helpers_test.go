package inject

import (
	"crypto/tls"

	"github.com/sekisho/sekisho/internal/testutil"
)

type tlsCfg struct{ Config tls.Config }

func tlsConfigFor(l *testutil.Leaf) *tlsCfg {
	return &tlsCfg{Config: tls.Config{Certificates: []tls.Certificate{l.TLS}, MinVersion: tls.VersionTLS12}}
}
