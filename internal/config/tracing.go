package config

import (
	"net/url"
	"sort"
	"strings"

	"golang.org/x/net/http/httpguts"

	"github.com/sekisho/sekisho/internal/tracing"
)

// checkTracing reports tracing values the exporter could not use. Values
// of headers (a collector's API key) are never repeated in a message.
func (c *compiler) checkTracing(f *File) {
	t := f.Tracing
	if t == nil {
		return
	}
	switch t.Protocol {
	case "", tracing.ProtocolGRPC, tracing.ProtocolHTTP:
	default:
		c.addf([]any{"tracing", "protocol"}, "%q: use grpc or http/protobuf", t.Protocol)
	}
	if t.Endpoint != "" {
		u, err := url.Parse(t.Endpoint)
		switch {
		case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "":
			c.addf([]any{"tracing", "endpoint"}, "%q: use the collector's http:// or https:// URL, e.g. http://otel-collector:4318", withoutUserInfo(t.Endpoint))
		case u.User != nil:
			c.addf([]any{"tracing", "endpoint"}, "the URL must not carry user info: send credentials in tracing.headers")
		case u.RawQuery != "" || u.Fragment != "":
			c.addf([]any{"tracing", "endpoint"}, "the URL must not have a query or fragment (the exporter would drop it; send credentials in tracing.headers)")
		}
	}
	if r := t.SampleRatio; r != nil && !(*r >= 0 && *r <= 1) {
		c.addf([]any{"tracing", "sample_ratio"}, "%v: use a number from 0 (no new traces) to 1 (every one)", *r)
	}
	names := make([]string, 0, len(t.Headers))
	for name := range t.Headers {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		switch {
		case !httpguts.ValidHeaderFieldName(name):
			c.addf([]any{"tracing", "headers", name}, "%q is not a valid header name", name)
		case !httpguts.ValidHeaderFieldValue(t.Headers[name]):
			c.addf([]any{"tracing", "headers", name}, "the value is not a valid header value (a line break or control character)")
		}
	}
}

// withoutUserInfo keeps what may be a password out of a message about a
// URL that does not parse.
func withoutUserInfo(s string) string {
	if i := strings.LastIndexByte(s, '@'); i >= 0 {
		return "…" + s[i:]
	}
	return s
}
