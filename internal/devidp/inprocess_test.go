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
