package login

import (
	"html/template"
	"net/http"
	"strings"

	"github.com/sekisho/sekisho/internal/httperr"
	"github.com/sekisho/sekisho/internal/reqinfo"
)

// page is the data of every login page.
type page struct {
	Title     string
	Message   string
	Retry     string // "Try again" link, if any
	Action    string // form target of the sign-out confirmation
	Providers []providerLink
	RequestID string
}

type providerLink struct {
	Name string
	URL  string
}

// contentSecurityPolicy allows the inline style and nothing else: the
// pages load no scripts, images or fonts, and may not be framed.
const contentSecurityPolicy = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; frame-ancestors 'none'"

const layout = `{{define "top"}}<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}}</title>
<style>
body{font-family:system-ui,sans-serif;max-width:28rem;margin:4rem auto;padding:0 1rem;color:#1a1a1a;line-height:1.5}
h1{font-size:1.5rem}
.button,button{display:block;width:100%;box-sizing:border-box;margin:.5rem 0;padding:.7rem 1rem;border:1px solid #1a4fa0;border-radius:.4rem;background:#1a4fa0;color:#fff;font:inherit;text-align:center;text-decoration:none;cursor:pointer}
.button:focus,button:focus{outline:3px solid #f5a623;outline-offset:2px}
ul{list-style:none;padding:0}
small{color:#555}
</style></head><body><main>
<h1>{{.Title}}</h1>{{end}}
{{define "bottom"}}{{if .RequestID}}<p><small>Request id: <code>{{.RequestID}}</code></small></p>{{end}}
</main></body></html>
{{end}}`

var (
	signInPage = template.Must(template.New("sign_in").Parse(layout + `{{template "top" .}}
<p>Choose how to sign in.</p>
<ul>{{range .Providers}}<li><a class="button" href="{{.URL}}">Sign in with {{.Name}}</a></li>{{end}}</ul>
{{template "bottom" .}}`))

	errorPage = template.Must(template.New("error").Parse(layout + `{{template "top" .}}
<p role="alert">{{.Message}}</p>
{{if .Retry}}<p><a class="button" href="{{.Retry}}">Try again</a></p>{{end}}
{{template "bottom" .}}`))

	signOutPage = template.Must(template.New("sign_out").Parse(layout + `{{template "top" .}}
<p>Do you want to sign out?</p>
<form method="post" action="{{.Action}}"><button type="submit">Sign out</button></form>
{{template "bottom" .}}`))

	signedOutPage = template.Must(template.New("signed_out").Parse(layout + `{{template "top" .}}
<p>You have been signed out.</p>
<p><a class="button" href="/">Return to the site</a></p>
{{template "bottom" .}}`))
)

// renderPage writes one of the login pages.
func renderPage(w http.ResponseWriter, r *http.Request, status int, t *template.Template, data page) {
	if info := reqinfo.From(r.Context()); info != nil {
		data.RequestID = info.ID
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_ = t.Execute(w, data)
	}
}

// fail answers with an error page (JSON for API clients). msg is shown to
// the user and must not carry tokens or other secrets; retry, when set, is
// offered as a link and never followed automatically, so a failing
// provider cannot cause a redirect loop.
func (s *Service) fail(w http.ResponseWriter, r *http.Request, status int, msg, retry string) {
	if httperr.WantsJSON(r) {
		httperr.Write(w, r, status, msg)
		return
	}
	title := "Sign-in problem"
	if strings.HasSuffix(r.URL.Path, pathSignOut) {
		title = "Sign-out problem"
	}
	renderPage(w, r, status, errorPage, page{Title: title, Message: msg, Retry: retry})
}
