package decision

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/sekisho/sekisho/internal/snapshot"
)

// TestNginxAuthRequest runs the real nginx with examples/integrations/nginx.conf
// in front of an app, with sekisho deciding.
func TestNginxAuthRequest(t *testing.T) {
	bin := findBinary(t, "nginx")
	f := newFixture(t, Config{}, loginConfig)
	f.dec.SetLogin(func(*snapshot.Snapshot) LoginStarter { return &fakeLogin{} })
	app := newRecordingApp(t)

	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "logs"), 0o755); err != nil {
		t.Fatal(err)
	}
	listen := freeAddr(t)
	conf := example(t, "nginx.conf",
		"listen 80;", "listen "+listen+";",
		"127.0.0.1:9191", f.addr(),
		"127.0.0.1:3000", app.addr(),
		"127.0.0.1:8080", freeAddr(t),
	)
	confFile := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confFile, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	global := "daemon off; pid " + filepath.Join(dir, "nginx.pid") + ";"
	if os.Geteuid() == 0 {
		global += " user root;" // workers read the temp directory
	}
	errLog := filepath.Join(dir, "error.log")
	startServer(t, listen, filepath.Join(dir, "stdout.log"), bin, "-p", dir, "-c", confFile, "-e", errLog, "-g", global)

	runProxyCases(t, listen, app, proxyCases(f, proxyStatus{canonical: true, badPath: 403, noRoute: 403, hopIdentity: 200}))
	runMethodCases(t, listen, app, methodProxyCases(f, "nginx"))
	noClientRequestID(t, f)
	if t.Failed() {
		log, _ := os.ReadFile(errLog)
		t.Logf("nginx error log:\n%s", log)
	}
}
