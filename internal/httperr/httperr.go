// Package httperr writes the short error responses sekisho answers with
// itself (400, 404, 502, ...). Every such answer names the route and request
// id so an operator can find the log line, and never carries internal detail
// such as a stack trace, an upstream address or a credential.
package httperr

import (
	"encoding/json"
	"html/template"
	"net/http"
	"strings"

	"github.com/sekisho/sekisho/internal/reqinfo"
)

// Body is the JSON form of an error answer.
type Body struct {
	Status    int    `json:"status"`
	Error     string `json:"error"`
	Message   string `json:"message,omitempty"`
	Route     string `json:"route,omitempty"`
	RequestID string `json:"request_id,omitempty"`
	// Actions are what the person can do next (sign out, switch account).
	Actions []Action `json:"actions,omitempty"`
}

// Action is a button on the error page: a POST form when Method is POST
// (state-changing actions such as sign-out), else a link.
type Action struct {
	Label  string `json:"label"`
	URL    string `json:"url"`
	Method string `json:"method,omitempty"`
}

var page = template.Must(template.New("error").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Status}} {{.Error}}</title>
<style>body{font-family:system-ui,sans-serif;max-width:40rem;margin:3rem auto;padding:0 1rem;color:#222}code{background:#f3f3f3;padding:0 .2em}</style>
</head><body><main>
<h1>{{.Status}} {{.Error}}</h1>
{{if .Message}}<p>{{.Message}}</p>{{end}}
<dl>{{if .Route}}<dt>Route</dt><dd><code>{{.Route}}</code></dd>{{end}}{{if .RequestID}}<dt>Request id</dt><dd><code>{{.RequestID}}</code></dd>{{end}}</dl>
{{range .Actions}}{{if eq .Method "POST"}}<form method="post" action="{{.URL}}"><button type="submit">{{.Label}}</button></form>{{else}}<p><a href="{{.URL}}">{{.Label}}</a></p>{{end}}{{end}}
</main></body></html>
`))

// Write answers r with status and a short, safe message. The message must not
// contain secrets: it is shown to the client. The answer is JSON when the
// client prefers JSON, a small HTML page otherwise.
func Write(w http.ResponseWriter, r *http.Request, status int, message string) {
	WriteActions(w, r, status, message)
}

// WriteActions is Write with buttons for what to do next.
func WriteActions(w http.ResponseWriter, r *http.Request, status int, message string, actions ...Action) {
	b := Body{Status: status, Error: http.StatusText(status), Message: message, Actions: actions}
	if info := reqinfo.From(r.Context()); info != nil {
		b.Route = info.Route
		b.RequestID = info.ID
	}
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	if WantsJSON(r) {
		h.Set("Content-Type", "application/json")
		w.WriteHeader(status)
		if r.Method != http.MethodHead {
			_ = json.NewEncoder(w).Encode(b)
		}
		return
	}
	h.Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_ = page.Execute(w, b)
	}
}

// WantsJSON reports whether the client asked for JSON ahead of HTML: an API
// client gets a machine-readable body, a browser a page.
func WantsJSON(r *http.Request) bool {
	accept := r.Header.Get("Accept")
	if accept == "" {
		return false
	}
	j := strings.Index(accept, "json")
	if j < 0 {
		return false
	}
	h := strings.Index(accept, "text/html")
	return h < 0 || j < h
}
