package decision

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sekisho/sekisho/internal/snapshot"
)

// TestCaddyForwardAuth runs the real Caddy with examples/integrations/Caddyfile
// in front of an app, with sekisho deciding.
func TestCaddyForwardAuth(t *testing.T) {
	bin := findBinary(t, "caddy")
	f := newFixture(t, Config{}, loginConfig)
	f.dec.SetLogin(func(*snapshot.Snapshot) LoginStarter { return &fakeLogin{} })
	app := newRecordingApp(t)

	dir := t.TempDir()
	listen := freeAddr(t)
	_, port, _ := strings.Cut(listen, ":")
	conf := example(t, "Caddyfile",
		"http://:8000", "http://:"+port,
		"127.0.0.1:9191", f.addr(),
		"127.0.0.1:3000", app.addr(),
	)
	confFile := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(confFile, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	// Caddy keeps state under $HOME / XDG directories: keep it in the test's.
	t.Setenv("HOME", dir)
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(dir, "config"))
	t.Setenv("XDG_DATA_HOME", filepath.Join(dir, "data"))
	logFile := filepath.Join(dir, "caddy.log")
	startServer(t, listen, logFile, bin, "run", "--config", confFile, "--adapter", "caddyfile")

	runProxyCases(t, listen, app, proxyCases(f, proxyStatus{badPath: 400, noRoute: 404, hopIdentity: 400}))
	runMethodCases(t, listen, app, methodProxyCases(f, "caddy"))
	noClientRequestID(t, f)
	if t.Failed() {
		log, _ := os.ReadFile(logFile)
		t.Logf("caddy log:\n%s", log)
	}
}
