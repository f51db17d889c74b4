// Package echo is the built-in demo upstream (`to: builtin:echo`). It answers
// in-process with what an upstream would have received, so that a new user
// can see the gateway work without running a service, and tests can assert
// exactly what sekisho forwards.
package echo

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"slices"
	"strconv"
)

// Request is what the upstream saw. Path is the escaped path exactly as it
// would appear on the wire, so that path normalization can be checked.
type Request struct {
	Method  string      `json:"method"`
	Host    string      `json:"host"`
	Path    string      `json:"path"`
	Query   string      `json:"query"`
	Headers http.Header `json:"headers"`
}

// redacted lists the headers whose values the echo never reflects: the demo
// page may be shown or shared, and credentials must not appear in it.
var redacted = []string{"Authorization", "Proxy-Authorization", "Cookie"}

// Transport answers every request itself, without a network. It is an
// http.RoundTripper so that the proxy uses it exactly like a real upstream.
type Transport struct{}

// RoundTrip describes req as JSON. The request body is not read.
func (Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		_ = req.Body.Close()
	}
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	headers := req.Header.Clone()
	if headers == nil {
		headers = http.Header{}
	}
	for name, vs := range headers {
		if slices.Contains(redacted, textproto.CanonicalMIMEHeaderKey(name)) {
			for i := range vs {
				vs[i] = "[redacted]"
			}
		}
	}
	body, err := json.Marshal(Request{
		Method:  req.Method,
		Host:    host,
		Path:    req.URL.EscapedPath(),
		Query:   req.URL.RawQuery,
		Headers: headers,
	})
	if err != nil {
		return nil, fmt.Errorf("echo: encode request: %w", err)
	}
	return &http.Response{
		Status:     "200 OK",
		StatusCode: http.StatusOK,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header: http.Header{
			"Content-Type":   {"application/json"},
			"Content-Length": {strconv.Itoa(len(body))},
		},
		Body:          io.NopCloser(bytes.NewReader(body)),
		ContentLength: int64(len(body)),
		Request:       req,
	}, nil
}
