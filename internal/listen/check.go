package listen

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/mail"
	"net/url"
	"os"
	"strings"

	"github.com/sekisho/sekisho/internal/normalize"
)

// Problem is one invalid listener setting. Key is the setting's path below
// the section that configures it, spelled as in the configuration file
// ("tls.cert_file", "tls.acme.domains[1]"; "" for the section itself), so
// that the config compiler can point at its line. Msg says what is wrong;
// it names files but never quotes their contents.
type Problem struct {
	Key string
	Msg string
}

func (p Problem) String() string {
	if p.Key == "" {
		return p.Msg
	}
	return p.Key + ": " + p.Msg
}

// Problems is the error for a configuration with problems, so that a caller
// that starts listeners without going through the config compiler still
// learns every mistake at once.
type Problems []Problem

func (ps Problems) Error() string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, "; ")
}

// Check reports everything that would make Start refuse cfg, short of
// binding the sockets: the settings, and the certificate files, which it
// reads and parses. `sekisho check` runs it through the config compiler and
// Start runs it again, so the two can never disagree.
func Check(cfg *Config) []Problem {
	var ps []Problem
	add := func(key, format string, args ...any) {
		ps = append(ps, Problem{Key: key, Msg: fmt.Sprintf(format, args...)})
	}
	if cfg.HTTP == "" && cfg.HTTPS == "" {
		add("", "no listener address: set http, https or both")
	}
	for _, a := range [...]struct{ key, addr string }{{"http", cfg.HTTP}, {"https", cfg.HTTPS}} {
		if a.addr == "" {
			continue
		}
		if err := CheckAddr(a.addr); err != nil {
			add(a.key, "%v", err)
		}
	}
	files := cfg.CertFile != "" || cfg.KeyFile != ""
	switch {
	case files && cfg.ACME != nil:
		add("tls", "use either cert_file/key_file or acme: they are mutually exclusive")
	case files && (cfg.CertFile == "" || cfg.KeyFile == ""):
		add("tls", "cert_file and key_file must be set together")
	case files:
		if _, err := LoadKeyPair(cfg.CertFile, cfg.KeyFile); err != nil {
			ps = append(ps, FileProblem("tls", err))
		}
	}
	switch {
	case cfg.HTTPS != "" && !cfg.tlsOn():
		add("https", "https listener %s needs tls: cert_file and key_file, or acme", cfg.HTTPS)
	case cfg.HTTPS == "" && cfg.tlsOn():
		add("tls", "tls is set but there is no https listener address")
	}
	for _, d := range [...]struct {
		key string
		neg bool
	}{
		{"read_header_timeout", cfg.ReadHeaderTimeout < 0},
		{"read_timeout", cfg.ReadTimeout < 0},
		{"write_timeout", cfg.WriteTimeout < 0},
		{"idle_timeout", cfg.IdleTimeout < 0},
		{"max_header_bytes", cfg.MaxHeaderBytes < 0},
	} {
		if d.neg {
			add(d.key, "must not be negative")
		}
	}
	if cfg.RedirectPort < 0 || cfg.RedirectPort > 65535 {
		add("redirect_port", "%d is not a port number", cfg.RedirectPort)
	}
	if cfg.ACME != nil {
		ps = append(ps, cfg.ACME.check()...)
	}
	return ps
}

// CheckAddr reports whether addr is a listen address (host:port, host may
// be empty). It does not bind.
func CheckAddr(addr string) error {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return fmt.Errorf("%q is not host:port (e.g. \":8080\")", addr)
	}
	return nil
}

// check validates the ACME settings as far as possible without the
// network: the domains, the account e-mail, the directory URL, and that
// the cache directory, when it exists, is a directory.
func (a *ACME) check() []Problem {
	var ps []Problem
	add := func(key, format string, args ...any) {
		ps = append(ps, Problem{Key: "tls.acme." + key, Msg: fmt.Sprintf(format, args...)})
	}
	if len(a.Domains) == 0 {
		add("domains", "acme needs at least one domain")
	}
	for i, d := range a.Domains {
		if h, ok := normalize.Host(d); !ok || h != d {
			add(fmt.Sprintf("domains[%d]", i), "acme domain %q is not a lower-case host name without port", d)
		}
	}
	if a.Email != "" {
		if addr, err := mail.ParseAddress(a.Email); err != nil || addr.Address != a.Email {
			add("email", "%q is not an e-mail address", a.Email)
		}
	}
	if a.DirectoryURL != "" {
		u, err := url.Parse(a.DirectoryURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			add("directory_url", "%q is not an http(s) URL of an ACME directory", a.DirectoryURL)
		}
	}
	if a.CacheDir == "" {
		add("cache_dir", "acme needs a cache_dir to keep certificates across restarts")
	} else if fi, err := os.Stat(a.CacheDir); err == nil && !fi.IsDir() {
		add("cache_dir", "%s is not a directory", a.CacheDir)
	}
	return ps
}

// FileError is a file named by a setting that cannot be used. Key is the
// setting ("cert_file", "key_file", "client_ca_file"); the message names
// the file and never quotes it.
type FileError struct {
	Key string
	Err error
}

func (e *FileError) Error() string { return e.Key + ": " + e.Err.Error() }
func (e *FileError) Unwrap() error { return e.Err }

// FileProblem turns an error of LoadKeyPair or NewCertReloader into a
// Problem at section.Key when it blames one file, at section otherwise.
func FileProblem(section string, err error) Problem {
	var fe *FileError
	if errors.As(err, &fe) {
		if section == "" {
			return Problem{Key: fe.Key, Msg: fe.Err.Error()}
		}
		return Problem{Key: section + "." + fe.Key, Msg: fe.Err.Error()}
	}
	return Problem{Key: section, Msg: err.Error()}
}

// LoadKeyPair reads a PEM certificate chain and its private key, as
// tls.LoadX509KeyPair does, but its error is a *FileError that says which
// of the two files is at fault: a missing, unreadable or non-PEM
// certificate blames cert_file; a missing, unparsable or mismatched key
// blames key_file.
func LoadKeyPair(certFile, keyFile string) (tls.Certificate, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return tls.Certificate{}, &FileError{Key: "cert_file", Err: err}
	}
	if err := firstCertificate(certPEM); err != nil {
		return tls.Certificate{}, &FileError{Key: "cert_file", Err: fmt.Errorf("%s: %w", certFile, err)}
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return tls.Certificate{}, &FileError{Key: "key_file", Err: err}
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, &FileError{Key: "key_file", Err: fmt.Errorf("%s (key of %s): %w", keyFile, certFile, err)}
	}
	return pair, nil
}

// firstCertificate checks that data holds a PEM certificate that parses,
// with messages that name block types at most.
func firstCertificate(data []byte) error {
	var skipped []string
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			skipped = append(skipped, b.Type)
			continue
		}
		if _, err := x509.ParseCertificate(b.Bytes); err != nil {
			return fmt.Errorf("the certificate does not parse: %w", err)
		}
		return nil
	}
	if len(skipped) == 0 {
		return errors.New("failed to find any PEM data (want a PEM certificate)")
	}
	return fmt.Errorf("no CERTIFICATE block in it, only %s", strings.Join(skipped, ", "))
}

// LoadCAPool reads the PEM certificates of a CA file into a pool. A file
// without any certificate is an error, since an empty pool would refuse
// every peer. The error names the file and never quotes it.
func LoadCAPool(file string) (*x509.CertPool, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("%s: no PEM certificate in it", file)
	}
	return pool, nil
}
