package kubelogin

import (
	"context"
	"errors"
	"fmt"

	"github.com/coreos/go-oidc/v3/oidc"
)

// deviceLogin is the device authorization grant (RFC 8628): the user opens
// the verification URL on any device and enters the code while this
// process polls the token endpoint.
func (r *run) deviceLogin(ctx context.Context, p *oidc.Provider) (*cacheEntry, error) {
	cfg := r.oauthConfig(ctx, p, "")
	if cfg.Endpoint.DeviceAuthURL == "" {
		return nil, fmt.Errorf("%s does not advertise a device_authorization_endpoint: it has no device code login; sign in with a browser instead (drop --device-code)", r.o.Issuer)
	}
	hctx := oidc.ClientContext(ctx, r.o.HTTPClient)
	da, err := cfg.DeviceAuth(hctx)
	if err != nil {
		return nil, fmt.Errorf("starting the device login (does the provider allow the device code grant for client %q?): %w", r.o.ClientID, describe(err))
	}
	if da.VerificationURIComplete != "" {
		r.say("to sign in, open %s (the code %s is filled in)", da.VerificationURIComplete, da.UserCode)
	} else {
		r.say("to sign in, open %s and enter the code %s", da.VerificationURI, da.UserCode)
	}
	if r.o.OpenBrowser != nil {
		u := da.VerificationURIComplete
		if u == "" {
			u = da.VerificationURI
		}
		if err := r.o.OpenBrowser(ctx, u); err != nil {
			r.say("could not open a browser (%v)", err)
		}
	}
	tok, err := cfg.DeviceAccessToken(hctx, da)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return nil, fmt.Errorf("no device login within the time allowed: %w", err)
		}
		return nil, fmt.Errorf("device login: %w", describe(err))
	}
	return r.entry(ctx, p, tok, "", nil)
}
