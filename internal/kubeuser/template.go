package kubeuser

import (
	"errors"
	"fmt"
	"strings"

	"github.com/sekisho/sekisho/internal/identity"
)

// Template is a username or group with placeholders for the identity's
// values, in the {{…}} style of aws-iam-authenticator's mappings:
//
//	{{username}} {{subject}} {{email}} {{issuer}} {{token_name}}
//	{{claims.NAME}}  a string claim of the token
//	{{groups}}       in a group template only: one group per group of the
//	                 identity (gid:{{groups}} prefixes every group)
//
// A placeholder whose value is empty or missing fails the mapping (the
// token is then unauthenticated) rather than producing a shorter name that
// could be someone else's.
type Template struct {
	src   string
	parts []part
}

type part struct {
	lit   string // literal text, when name is ""
	name  string // placeholder: "username", "claims", ...
	claim string // for "claims"
}

// ParseTemplate parses s; groups allows {{groups}}.
func ParseTemplate(s string, groups bool) (Template, error) {
	t := Template{src: s}
	rest := s
	nGroups := 0
	for rest != "" {
		i := strings.Index(rest, "{{")
		if i < 0 {
			if strings.Contains(rest, "}}") {
				return Template{}, errors.New(`"}}" without "{{"`)
			}
			t.parts = append(t.parts, part{lit: rest})
			break
		}
		if i > 0 {
			if strings.Contains(rest[:i], "}}") {
				return Template{}, errors.New(`"}}" without "{{"`)
			}
			t.parts = append(t.parts, part{lit: rest[:i]})
		}
		end := strings.Index(rest[i:], "}}")
		if end < 0 {
			return Template{}, errors.New(`"{{" without "}}"`)
		}
		name := strings.TrimSpace(rest[i+2 : i+end])
		rest = rest[i+end+2:]
		p := part{name: name}
		switch {
		case name == "username", name == "subject", name == "email", name == "issuer", name == "token_name":
		case name == "groups":
			if !groups {
				return Template{}, errors.New("{{groups}} is a list: use it in groups, not in the username")
			}
			nGroups++
			if nGroups > 1 {
				return Template{}, errors.New("{{groups}} may appear once per group")
			}
		case strings.HasPrefix(name, "claims."):
			p.name, p.claim = "claims", strings.TrimPrefix(name, "claims.")
			if p.claim == "" {
				return Template{}, errors.New("{{claims.}} needs a claim name, e.g. {{claims.preferred_username}}")
			}
		default:
			return Template{}, fmt.Errorf("unknown placeholder {{%s}}: use username, subject, email, issuer, token_name, claims.NAME or (in groups) groups", name)
		}
		t.parts = append(t.parts, p)
	}
	if len(t.parts) == 0 {
		return Template{}, errors.New("empty")
	}
	return t, nil
}

// String returns the template as written.
func (t Template) String() string { return t.src }

// fixedSystem reports whether every expansion starts with "system:": the
// template begins with literal text in the reserved namespace.
func (t Template) fixedSystem() bool {
	return len(t.parts) > 0 && t.parts[0].name == "" && isSystem(t.parts[0].lit)
}

// expand fills the placeholders from id: one string, or one per group of
// the identity when the template has {{groups}} (none for an identity
// without groups).
func (t Template) expand(id *identity.Identity) ([]string, error) {
	if len(t.parts) == 1 && t.parts[0].name == "" {
		return []string{t.parts[0].lit}, nil
	}
	groupsAt := -1
	var b strings.Builder
	for i, p := range t.parts {
		if p.name == "groups" {
			groupsAt = i
			continue
		}
		if groupsAt >= 0 {
			continue // filled per group below
		}
		v, err := value(p, id)
		if err != nil {
			return nil, err
		}
		b.WriteString(v)
	}
	if groupsAt < 0 {
		return []string{b.String()}, nil
	}
	prefix := b.String()
	var suffix strings.Builder
	for _, p := range t.parts[groupsAt+1:] {
		v, err := value(p, id)
		if err != nil {
			return nil, err
		}
		suffix.WriteString(v)
	}
	out := make([]string, 0, len(id.Groups))
	for _, g := range id.Groups {
		if g != "" {
			out = append(out, prefix+g+suffix.String())
		}
	}
	return out, nil
}

func value(p part, id *identity.Identity) (string, error) {
	var v string
	switch p.name {
	case "":
		return p.lit, nil
	case "username":
		v = id.Username
	case "subject":
		v = id.Subject
	case "email":
		v = id.Email
	case "issuer":
		v = id.Issuer
	case "token_name":
		v = id.TokenName
	case "claims":
		s, ok := id.Claims[p.claim].(string)
		if !ok {
			return "", fmt.Errorf("claim %q is missing or not a string", p.claim)
		}
		v = s
	}
	if v == "" {
		return "", fmt.Errorf("{{%s}} is empty for this identity", p.name)
	}
	return v, nil
}
