package gateway

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/sekisho/sekisho/internal/authn/jwtauth/jwttest"
)

// TestRequestSmuggling sends the classic framing ambiguities (both
// Content-Length and Transfer-Encoding, obfuscated Transfer-Encoding,
// conflicting lengths) with a second request to a protected route hidden
// where a proxy that framed the message differently would see it. Whatever
// the framing, the protected path never reaches the upstream: ambiguous
// framing is refused, and after a request framed by Transfer-Encoding the
// connection is closed (RFC 9112 6.1), so bytes a front proxy counted as
// body are never read as a request of their own.
func TestRequestSmuggling(t *testing.T) {
	iss := jwttest.NewIssuer(t)
	rec, up := newUpstreamLog(t)
	f := newFixture(t, fmt.Sprintf(`
listen: {http: "127.0.0.1:0"}
jwt:
  - issuer: %s
    audiences: [api]
routes:
  - name: public
    match: {path_prefix: /public}
    to: %s
    public: true
  - name: admin
    match: {path_prefix: /admin}
    to: %s
    allow: [{groups: [admin]}]
`, iss.URL, up, up))

	const smuggled = "GET /admin/secret HTTP/1.1\r\nHost: gw.test\r\n\r\n"
	chunkedSmuggle := fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(smuggled), smuggled)
	for _, tt := range []struct {
		name string
		raw  string
		// first is the status the first request must get.
		first int
	}{
		{
			// Transfer-Encoding wins (RFC 9112 6.3): the chunked body ends
			// at "0"; a front proxy that went by Content-Length thinks the
			// smuggled request is body.
			name: "CL.TE",
			raw: "POST /public/x HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 60\r\nTransfer-Encoding: chunked\r\n\r\n" +
				"0\r\n\r\n" + smuggled,
			first: http.StatusOK,
		},
		{
			name: "TE.CL",
			raw: "POST /public/x HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n" +
				chunkedSmuggle,
			first: http.StatusOK,
		},
		{
			name:  "unknown transfer coding",
			raw:   "POST /public/x HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: xchunked\r\n\r\n" + chunkedSmuggle,
			first: http.StatusNotImplemented,
		},
		{
			name:  "two Transfer-Encoding headers",
			raw:   "POST /public/x HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n" + chunkedSmuggle,
			first: http.StatusNotImplemented,
		},
		{
			name:  "space before the colon",
			raw:   "POST /public/x HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding : chunked\r\nContent-Length: 0\r\n\r\n" + chunkedSmuggle,
			first: http.StatusBadRequest,
		},
		{
			name:  "conflicting Content-Length",
			raw:   "POST /public/x HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 0\r\nContent-Length: 60\r\n\r\n" + smuggled,
			first: http.StatusBadRequest,
		},
		{
			name:  "folded Transfer-Encoding",
			raw:   "POST /public/x HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 0\r\nTransfer-Encoding:\r\n chunked\r\n\r\n" + chunkedSmuggle,
			first: http.StatusOK,
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			conn := dialRaw(t, f)
			if _, err := io.WriteString(conn, tt.raw); err != nil {
				t.Fatal(err)
			}
			br := bufio.NewReader(conn)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("no answer to the first request: %v", err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.first {
				t.Errorf("first request: status %d, want %d", resp.StatusCode, tt.first)
			}
			// Nothing more is read from the connection: whatever followed
			// the first request's framing is dropped with the connection.
			if resp, err := http.ReadResponse(br, nil); err == nil {
				resp.Body.Close()
				t.Errorf("a second request was read from the connection: status %d", resp.StatusCode)
			} else if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Errorf("the connection was not closed after the answer: %v", err)
			}
			for _, req := range rec.since(0) {
				if strings.HasPrefix(req.path, "/admin") {
					t.Fatalf("the smuggled request reached the upstream: %s %s", req.method, req.path)
				}
			}
		})
	}
}
