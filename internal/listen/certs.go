package listen

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/fsnotify/fsnotify"
)

// CertReloader serves the current certificate pair from files and replaces
// it when the files change. A pair that fails to load never replaces a good
// one: a half-written or mismatched renewal must not take the gateway down.
type CertReloader struct {
	certFile, keyFile string
	log               *slog.Logger
	cert              atomic.Pointer[tls.Certificate]
	mu                sync.Mutex // serialises reloads so the last one wins

	watcher *fsnotify.Watcher
	done    chan struct{}
	once    sync.Once
}

// NewCertReloader loads the pair; Watch starts following the files. The
// decision service's TLS listeners use it as the gateway's do.
func NewCertReloader(certFile, keyFile string, log *slog.Logger) (*CertReloader, error) {
	c := &CertReloader{certFile: certFile, keyFile: keyFile, log: log, done: make(chan struct{})}
	if err := c.Reload(); err != nil {
		return nil, err
	}
	return c, nil
}

// GetCertificate is for tls.Config.GetCertificate.
func (c *CertReloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return c.cert.Load(), nil
}

// Reload reads the pair and swaps it in if it is valid and new. Errors say
// which file is wrong and why (no PEM, key mismatch), never what is in it.
func (c *CertReloader) Reload() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	pair, err := LoadKeyPair(c.certFile, c.keyFile)
	if err != nil {
		err = fmt.Errorf("listen: load certificate %s with key %s: %w", c.certFile, c.keyFile, err)
		if c.cert.Load() != nil {
			c.log.Error("certificate reload failed, keeping the current certificate", "err", err)
		}
		return err
	}
	if old := c.cert.Load(); old != nil && bytes.Equal(old.Leaf.Raw, pair.Leaf.Raw) {
		return nil
	}
	c.cert.Store(&pair)
	c.log.Info("certificate loaded", "file", c.certFile, "subject", pair.Leaf.Subject.String(),
		"serial", pair.Leaf.SerialNumber.String(), "not_after", pair.Leaf.NotAfter)
	return nil
}

// Watch follows the files' parent directories rather than the files: a
// Kubernetes Secret volume swaps a symlink in the directory and never writes
// the file itself.
func (c *CertReloader) Watch() error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("listen: watch certificate files: %w", err)
	}
	for _, dir := range uniq(filepath.Dir(c.certFile), filepath.Dir(c.keyFile)) {
		if err := w.Add(dir); err != nil {
			w.Close()
			return fmt.Errorf("listen: watch certificate directory %s: %w", dir, err)
		}
	}
	c.watcher = w
	go c.loop()
	return nil
}

func (c *CertReloader) loop() {
	defer close(c.done)
	for {
		select {
		case ev, ok := <-c.watcher.Events:
			if !ok {
				return
			}
			if ev.Op == fsnotify.Chmod {
				continue
			}
			_ = c.Reload() // logged inside; the current certificate stays
		case err, ok := <-c.watcher.Errors:
			if !ok {
				return
			}
			c.log.Error("certificate watch error", "err", err)
		}
	}
}

// Close stops watching; safe on a nil or never-watching reloader.
func (c *CertReloader) Close() {
	if c == nil || c.watcher == nil {
		return
	}
	c.once.Do(func() {
		c.watcher.Close()
		<-c.done
	})
}

func uniq(a, b string) []string {
	if a == b {
		return []string{a}
	}
	return []string{a, b}
}
