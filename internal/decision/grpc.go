package decision

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	"github.com/sekisho/sekisho/internal/httperr"
	"github.com/sekisho/sekisho/internal/normalize"
)

// RegisterGRPC registers the Envoy ext_authz service
// (envoy.service.auth.v3.Authorization) on g.
func (s *Server) RegisterGRPC(g *grpc.Server) {
	authv3.RegisterAuthorizationServer(g, authzServer{s})
}

type authzServer struct{ s *Server }

// Check decides one request described by Envoy. Every outcome is an
// answer, never a gRPC error: when sekisho cannot decide (starting, session
// store down) it is a 503 denied_response, so the request fails closed
// whatever Envoy's failure_mode_allow says.
func (a authzServer) Check(ctx context.Context, req *authv3.CheckRequest) (resp *authv3.CheckResponse, err error) {
	s := a.s
	var peerIP netip.Addr
	var state *tls.ConnectionState
	if p, ok := peer.FromContext(ctx); ok {
		if tcp, ok := p.Addr.(*net.TCPAddr); ok {
			peerIP = tcp.AddrPort().Addr().Unmap()
		}
		if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok {
			state = &ti.State
		}
	}
	attrs := req.GetAttributes()
	hr := attrs.GetRequest().GetHttp()
	h := envoyHeaders(hr)
	trusted := s.trusted(peerIP, state)
	id := normalize.RequestID(h, trusted) // the asking proxy, once trusted, vouches for it
	var span *decisionSpan
	if s.tracer != nil {
		md, _ := metadata.FromIncomingContext(ctx)
		ctx, span = s.startSpan(ctx, "envoy-grpc", id, grpcCarrier{md: md, headers: h}, trusted)
		defer func() { span.end(checkStatus(resp)) }()
	}

	if !trusted {
		s.log.WarnContext(ctx, "decision request from an untrusted peer refused",
			"dialect", "envoy-grpc", "peer", addrString(peerIP), "request_id", id)
		return denied(codes.PermissionDenied, http.StatusForbidden, "This decision endpoint answers trusted proxies only.", "", id, nil), nil
	}
	snap := s.current()
	if snap == nil {
		return denied(codes.Unavailable, http.StatusServiceUnavailable, "sekisho is starting.", "", id, nil), nil
	}
	d := &described{}
	if msg, ok := describeCheck(hr, h, d); !ok {
		return denied(codes.InvalidArgument, http.StatusBadRequest, msg, "", id, nil), nil
	}
	if name, bad := removesOwnHeader(snap, h); bad {
		return denied(codes.InvalidArgument, http.StatusBadRequest, connectionMessage(name), "", id, nil), nil
	}
	d.clientIP = peerIP
	if sa := attrs.GetSource().GetAddress().GetSocketAddress(); sa != nil {
		if ip, err := netip.ParseAddr(sa.GetAddress()); err == nil {
			d.clientIP = ip.Unmap()
		}
	}

	v := s.decide(ctx, snap, d)
	if span != nil {
		span.verdict(ctx, d, &v)
	}
	s.logDecision(ctx, "envoy-grpc", id, d, &v, slog.String("principal", attrs.GetSource().GetPrincipal()))
	if v.status == http.StatusOK {
		return &authv3.CheckResponse{
			Status: &rpcstatus.Status{Code: int32(codes.OK)},
			HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
				Headers:              headerOptions(v.set),
				HeadersToRemove:      lower(v.remove),
				ResponseHeadersToAdd: cookieOptions(v.cookies),
			}},
		}, nil
	}
	extra := make(http.Header, 1)
	msg, code := v.res.Message, grpcCode(v.status)
	switch {
	case v.status == http.StatusFound:
		extra.Set("Location", v.location)
		msg, code = "Sign in to continue.", codes.Unauthenticated
	case v.challenge != "":
		extra.Set("Www-Authenticate", v.challenge)
	}
	resp = denied(code, v.status, msg, v.res.RouteName, id, extra)
	dr := resp.GetDeniedResponse()
	dr.Headers = append(dr.Headers, cookieOptions(v.cookies)...)
	return resp, nil
}

// describeCheck fills d from Envoy's description of the request: the
// method, host, scheme and path (undecoded, with the query) attributes, and
// h, the request headers from envoyHeaders.
func describeCheck(hr *authv3.AttributeContext_HttpRequest, h http.Header, d *described) (string, bool) {
	if hr == nil || hr.GetMethod() == "" || !strings.HasPrefix(hr.GetPath(), "/") {
		return "The check request has no HTTP method and path (/...).", false
	}
	d.set(hr.GetMethod(), hr.GetScheme(), hr.GetHost(), hr.GetPath(), h)
	return "", true
}

// envoyHeaders turns the request headers Envoy sends (lower-case names;
// raw values with encode_raw_headers) into an http.Header the engine reads
// like any other. Pseudo-headers are left out: their content arrives in the
// method, host and path attributes.
func envoyHeaders(hr *authv3.AttributeContext_HttpRequest) http.Header {
	if hm := hr.GetHeaderMap(); hm != nil {
		h := make(http.Header, len(hm.GetHeaders()))
		for _, hv := range hm.GetHeaders() {
			if k := hv.GetKey(); k != "" && k[0] != ':' {
				v := hv.GetValue()
				if len(hv.GetRawValue()) > 0 {
					v = string(hv.GetRawValue())
				}
				h.Add(k, v)
			}
		}
		return h
	}
	m := hr.GetHeaders()
	h := make(http.Header, len(m))
	vals := make([]string, 0, len(m)) // one backing array for every value
	for k, v := range m {
		if k != "" && k[0] != ':' {
			vals = append(vals, v)
			h[http.CanonicalHeaderKey(k)] = vals[len(vals)-1 : len(vals) : len(vals)]
		}
	}
	return h
}

// headerOptions turns headers to set into Envoy header options that
// overwrite whatever the client sent under the same name.
func headerOptions(h http.Header) []*corev3.HeaderValueOption {
	out := make([]*corev3.HeaderValueOption, 0, len(h))
	for k, vs := range h {
		out = append(out, &corev3.HeaderValueOption{
			Header:       &corev3.HeaderValue{Key: strings.ToLower(k), Value: strings.Join(vs, ",")},
			AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
		})
	}
	return out
}

// cookieOptions adds each Set-Cookie value as its own header.
func cookieOptions(cookies []string) []*corev3.HeaderValueOption {
	if len(cookies) == 0 {
		return nil
	}
	out := make([]*corev3.HeaderValueOption, len(cookies))
	for i, c := range cookies {
		out[i] = &corev3.HeaderValueOption{
			Header:       &corev3.HeaderValue{Key: "set-cookie", Value: c},
			AppendAction: corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD,
		}
	}
	return out
}

func lower(names []string) []string {
	for i, n := range names {
		names[i] = strings.ToLower(n)
	}
	return names
}

// denied is a denial Envoy sends to the client as is: status, headers and
// the same short JSON body the gateway writes.
func denied(code codes.Code, httpStatus int, msg, route, id string, extra http.Header) *authv3.CheckResponse {
	body, _ := json.Marshal(httperr.Body{Status: httpStatus, Error: http.StatusText(httpStatus), Message: msg, Route: route, RequestID: id})
	headers := []*corev3.HeaderValueOption{
		{Header: &corev3.HeaderValue{Key: "content-type", Value: "application/json"}, AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD},
		{Header: &corev3.HeaderValue{Key: "cache-control", Value: "no-store"}, AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD},
	}
	headers = append(headers, headerOptions(extra)...)
	return &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(code), Message: msg},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status:  &typev3.HttpStatus{Code: typev3.StatusCode(httpStatus)},
			Headers: headers,
			Body:    string(body) + "\n",
		}},
	}
}

// grpcCode is the gRPC status of a denial: Envoy only looks at "OK or not",
// but the code tells a human reading a trace what happened.
func grpcCode(httpStatus int) codes.Code {
	switch httpStatus {
	case http.StatusUnauthorized:
		return codes.Unauthenticated
	case http.StatusForbidden:
		return codes.PermissionDenied
	case http.StatusNotFound:
		return codes.NotFound
	case http.StatusBadRequest:
		return codes.InvalidArgument
	case http.StatusServiceUnavailable:
		return codes.Unavailable
	}
	return codes.PermissionDenied
}

// checkStatus is the HTTP status a check response tells Envoy to answer
// with: 200 on OK, the denied response's status otherwise.
func checkStatus(resp *authv3.CheckResponse) int {
	if dr := resp.GetDeniedResponse(); dr != nil {
		return int(dr.GetStatus().GetCode())
	}
	return http.StatusOK
}
