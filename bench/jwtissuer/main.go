// Command jwtissuer is a throwaway OIDC issuer for bench/load.sh: it serves a
// discovery document and a JWKS on loopback and writes signed tokens to
// files, so the load script can drive sekisho and its peers with bearer JWTs.
//
// It also mints many distinct tokens (-tokens N), for the scenario that
// measures a gateway whose token cache sees every token once per cycle, and
// rotates its signing key on POST /rotate, for the scenario that measures a
// key rotation under load.
package main

import (
	"flag"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

func main() {
	addr := flag.String("listen", "127.0.0.1:18085", "address to serve discovery and JWKS on")
	out := flag.String("token-file", "token.jwt", "where to write the signed token")
	n := flag.Int("tokens", 0, "also mint this many distinct tokens (distinct subject, email and ID)")
	many := flag.String("tokens-file", "tokens.txt", "where to write the -tokens tokens, one per line")
	flag.Parse()

	is, err := newIssuer("http://" + *addr)
	if err != nil {
		log.Fatal(err)
	}
	tok, err := is.token(0)
	if err != nil {
		log.Fatal(err)
	}
	if err := writeFile(*out, []byte(tok)); err != nil {
		log.Fatal(err)
	}
	if *n > 0 {
		start := time.Now()
		f, err := os.CreateTemp(filepath.Dir(*many), ".tokens-*")
		if err != nil {
			log.Fatal(err)
		}
		if err := is.mint(f, *n); err != nil {
			log.Fatal(err)
		}
		if err := f.Close(); err != nil {
			log.Fatal(err)
		}
		if err := os.Rename(f.Name(), *many); err != nil {
			log.Fatal(err)
		}
		log.Printf("minted %d distinct tokens into %s in %s", *n, *many, time.Since(start).Round(time.Millisecond))
	}
	// Listen only once the tokens exist: the script takes the first answer
	// as "ready".
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	log.Fatal(http.Serve(ln, is.handler()))
}

// writeFile writes data to path through a temporary file and a rename, so
// a reader polling path never sees half a token.
func writeFile(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
