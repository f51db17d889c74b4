package inject

import (
	"crypto/tls"
	"log/slog"

	"github.com/sekisho/sekisho/internal/testutil"
)

type tlsCfg struct{ Config tls.Config }

func tlsConfigFor(l *testutil.Leaf) *tlsCfg {
	return &tlsCfg{Config: tls.Config{Certificates: []tls.Certificate{l.TLS}, MinVersion: tls.VersionTLS12}}
}

func testLogger(w *testutil.SyncBuffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
