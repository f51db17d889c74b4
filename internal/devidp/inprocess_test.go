package devidp

import (
	"encoding/json"
	"errors"
	"net/http"
	"testing"
)

type refuse struct{ called bool }

func (r *refuse) RoundTrip(*http.Request) (*http.Response, error) {
	r.called = true
	return nil, errors.New("not in process")
}

func TestTransportServesInProcess(t *testing.T) {
	p := newFixture(t).p
	next := &refuse{}
	c := &http.Client{Transport: p.Transport(next)}
	resp, err := c.Get(p.Issuer() + "/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var doc struct {
		Issuer string `json:"issuer"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil || doc.Issuer != p.Issuer() {
		t.Fatalf("discovery through the in-process transport: %v %+v", err, doc)
	}
	if next.called {
		t.Fatal("an issuer request went to the network")
	}
	if _, err := c.Get("http://elsewhere.example/"); err == nil || !next.called {
		t.Fatal("a request for another host was not passed on")
	}
}

// TestRouter: the router serves whichever provider was added last for an
// issuer, an earlier provider's removal leaves the newer one in place, and
// once removed the issuer goes to the network again.
func TestRouter(t *testing.T) {
	p1, p2 := newFixture(t).p, newFixture(t).p
	// Two generations of one provider: the second is reached at the
	// first's URL, and its discovery document still names its own.
	own2 := p2.Issuer()
	p2.issuer = p1.Issuer()
	r := NewRouter()
	next := &refuse{}
	c := &http.Client{Transport: r.Transport(next)}
	served := func() (string, error) {
		resp, err := c.Get(p1.Issuer() + "/.well-known/openid-configuration")
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		var doc struct {
			Issuer string `json:"issuer"`
		}
		err = json.NewDecoder(resp.Body).Decode(&doc)
		return doc.Issuer, err
	}
	if _, err := served(); err == nil || !next.called {
		t.Fatal("an issuer nobody added was served")
	}
	remove1 := r.Add(p1)
	if got, err := served(); err != nil || got != p1.Issuer() {
		t.Fatalf("first provider: %q %v", got, err)
	}
	remove2 := r.Add(p2)
	remove1()
	if got, err := served(); err != nil || got != own2 {
		t.Fatalf("after a newer provider was added and the older removed: %q %v, want the newer (%s)", got, err, own2)
	}
	remove2()
	next.called = false
	if _, err := served(); err == nil || !next.called {
		t.Fatal("a removed provider was still served")
	}
}
