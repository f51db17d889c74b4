package normalize

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
)

// Trust is the set of proxies whose X-Forwarded-* headers are believed. Any
// client can send those headers, so believing them from anyone else would let
// a client choose its own address, scheme and host. The zero value and nil
// trust nobody.
type Trust struct {
	prefixes []netip.Prefix
}

// NewTrust compiles trusted proxy CIDRs ("10.0.0.0/8") and bare addresses
// ("192.0.2.1"). The error names the entry that is neither.
func NewTrust(cidrs []string) (*Trust, error) {
	t := &Trust{prefixes: make([]netip.Prefix, 0, len(cidrs))}
	for _, s := range cidrs {
		var p netip.Prefix
		var err error
		if strings.Contains(s, "/") {
			p, err = netip.ParsePrefix(s)
			p = p.Masked()
		} else {
			var a netip.Addr
			a, err = netip.ParseAddr(s)
			if err == nil && a.Zone() != "" {
				err = errors.New("zone not allowed")
			}
			p = netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())
		}
		if err != nil {
			return nil, fmt.Errorf("trusted proxy %q is not a CIDR or IP address: %w", s, err)
		}
		t.prefixes = append(t.prefixes, p)
	}
	return t, nil
}

// Contains reports whether ip belongs to a trusted proxy. IPv4-mapped IPv6
// addresses count as their IPv4 address.
func (t *Trust) Contains(ip netip.Addr) bool {
	if t == nil || !ip.IsValid() {
		return false
	}
	ip = ip.Unmap().WithZone("")
	for _, p := range t.prefixes {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// ClientIP is the original client behind a trusted peer: the right-most
// X-Forwarded-For entry (over all header lines) that is not itself a trusted
// proxy, since entries to its left were written by the client and prove
// nothing. An unparseable entry stops the walk and the last hop believed
// stands; with no entries the peer is the client. The caller has checked
// that peer is trusted.
func (t *Trust) ClientIP(peer netip.Addr, xff []string) netip.Addr {
	client := peer
	for i := len(xff) - 1; i >= 0; i-- {
		for rest := xff[i]; rest != ""; {
			var entry string
			if j := strings.LastIndexByte(rest, ','); j >= 0 {
				rest, entry = rest[:j], rest[j+1:]
			} else {
				rest, entry = "", rest
			}
			addr, ok := parseHop(strings.TrimSpace(entry))
			if !ok {
				return client
			}
			client = addr
			if !t.Contains(addr) {
				return client
			}
		}
	}
	return client
}

// Forwarded describes the original request as far as it can be believed.
type Forwarded struct {
	// ClientIP is the original client's address.
	ClientIP netip.Addr
	// Proto is the scheme of the original request: "http" or "https".
	Proto string
	// Host is the original Host as sent, with a port if it had one.
	Host string
	// For is the X-Forwarded-For chain received from trusted peers, "" when
	// the peer is untrusted; the proxy appends the peer to it.
	For string
	// FromProxy says the peer is a trusted proxy, whose X-Forwarded-* and
	// X-Request-Id are believed.
	FromProxy bool
}

// Forwarded works out who the original client was. From an untrusted peer
// the client's X-Forwarded-* headers are ignored. From a trusted peer the
// client is the right-most X-Forwarded-For entry that is not itself a trusted
// proxy: entries to its left were written by the client and prove nothing.
// An unparseable entry stops the walk, and the last hop believed before it
// stands as the client.
func (t *Trust) Forwarded(r *http.Request) Forwarded {
	peer := peerAddr(r.RemoteAddr)
	f := Forwarded{ClientIP: peer, Proto: "http", Host: r.Host}
	if r.TLS != nil {
		f.Proto = "https"
	}
	if !t.Contains(peer) {
		return f
	}
	f.FromProxy = true

	xff := r.Header.Values("X-Forwarded-For")
	f.For = strings.Join(xff, ", ")
	f.ClientIP = t.ClientIP(peer, xff)
	if v := r.Header.Values("X-Forwarded-Proto"); len(v) == 1 && (v[0] == "http" || v[0] == "https") {
		f.Proto = v[0]
	}
	if v := r.Header.Values("X-Forwarded-Host"); len(v) == 1 {
		if _, ok := Host(v[0]); ok {
			f.Host = v[0]
		}
	}
	return f
}

// peerAddr parses http.Request.RemoteAddr ("ip:port"); the zero Addr when it
// is not one, which no Trust contains.
func peerAddr(remote string) netip.Addr {
	if ap, err := netip.ParseAddrPort(remote); err == nil {
		return ap.Addr().Unmap()
	}
	a, _ := netip.ParseAddr(remote)
	return a.Unmap()
}

// parseHop parses one X-Forwarded-For entry: an address, optionally with a
// port ("192.0.2.1:5000", "[2001:db8::1]:5000") as some proxies write it.
func parseHop(s string) (netip.Addr, bool) {
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap().WithZone(""), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap().WithZone(""), true
	}
	return netip.Addr{}, false
}
