package engine

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/sekisho/sekisho/internal/authn"
	"github.com/sekisho/sekisho/internal/tracing"
)

// Span names of the pipeline phases.
const (
	phaseRoute        = "route"
	phaseAuthenticate = "authenticate"
	phaseAuthorize    = "authorize"
)

// phases records Evaluate's phases as sibling child spans of the span in
// the context Evaluate was given. Every method is a no-op on a nil
// *phases, so the untraced path only pays a nil check per phase.
type phases struct {
	t    *tracing.Tracer
	base context.Context // the caller's context: each phase is its child
	name string
	span trace.Span
}

// begin ends the running phase and starts the one called name, returning
// the context the phase's work runs in.
func (p *phases) begin(ctx context.Context, name string, res *Result) context.Context {
	if p == nil {
		return ctx
	}
	if p.span == nil {
		p.base = ctx
	} else {
		p.end(res)
	}
	p.name = name
	ctx, p.span = p.t.Start(p.base, name)
	return ctx
}

// end ends the running phase with what it found. Attributes hold names,
// rules and outcomes only: never a credential, a header value or the
// query.
func (p *phases) end(res *Result) {
	if p == nil || p.span == nil {
		return
	}
	span := p.span
	p.span = nil
	defer span.End()
	if !span.IsRecording() {
		return
	}
	switch p.name {
	case phaseRoute:
		if res.RouteName != "" {
			span.SetAttributes(attribute.String("sekisho.route", res.RouteName))
		}
		if res.Outcome != Allowed {
			span.SetAttributes(attribute.String("sekisho.outcome", res.Outcome.String()),
				attribute.String("sekisho.reason", res.Reason))
		} else if res.Route != nil && res.Route.Public {
			span.SetAttributes(attribute.Bool("sekisho.public", true))
		}
	case phaseAuthenticate:
		span.SetAttributes(attribute.String("sekisho.credential", sourceName(res.Source)))
		if res.Outcome == InvalidToken || res.Outcome == Unavailable {
			span.SetAttributes(attribute.String("sekisho.outcome", res.Outcome.String()))
			span.SetStatus(codes.Error, res.Reason)
		}
	case phaseAuthorize:
		decision := "deny"
		if res.Decision.Allow {
			decision = "allow"
		}
		span.SetAttributes(attribute.String("sekisho.decision", decision),
			attribute.String("sekisho.rule", res.Decision.Rule),
			attribute.String("sekisho.reason", res.Reason))
	}
}

// String names an outcome for logs and traces.
func (o Outcome) String() string {
	switch o {
	case Allowed:
		return "allowed"
	case BadRequest:
		return "bad_request"
	case NotFound:
		return "not_found"
	case Unauthenticated:
		return "unauthenticated"
	case InvalidToken:
		return "invalid_token"
	case Forbidden:
		return "forbidden"
	case Unavailable:
		return "unavailable"
	}
	return "unknown"
}

// sourceName says where the credential was found, never what it was.
func sourceName(s authn.Source) string {
	switch s {
	case authn.SourceAuthorization:
		return "authorization"
	case authn.SourceHeader:
		return "header"
	case authn.SourceCookie:
		return "cookie"
	case authn.SourceSession:
		return "session"
	}
	return "none"
}
