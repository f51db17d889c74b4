package secretref

import (
	"errors"
	"fmt"
	"net/url"
	"path"
	"regexp"
	"strconv"
	"strings"
	"unicode"

	"k8s.io/apimachinery/pkg/util/validation"
)

// Prefix starts every reference: `sekisho+` then a Scheme and `://`.
const Prefix = "sekisho+"

// BerglasAWSPrefix is the alias `berglas-aws://NAME-OR-ARN`, the syntax
// of the berglas tool, read as `sekisho+aws-sm://NAME-OR-ARN`.
const BerglasAWSPrefix = "berglas-aws://"

// TempFile is the Destination that asks for a new file on a
// memory-backed directory.
const TempFile = "tempfile"

// ErrMalformed marks a value that starts like a reference but is not a
// valid one. It is never passed on as an ordinary value: a typo must stop
// the program, not hand it the literal reference.
var ErrMalformed = errors.New("malformed secret reference")

// Schemes are every scheme a reference may name, in the order the docs
// list them.
var Schemes = []Scheme{AWSSecretsManager, AWSParameterStore, Vault, Kubernetes, GCPSecretManager, File}

// params are the query parameters each scheme accepts besides
// destination. Anything else is an error, so that a misspelt
// `?verison=2` cannot silently fetch the current version.
var params = map[Scheme][]string{
	AWSSecretsManager: {"version-id", "version-stage", "region"},
	AWSParameterStore: {"version", "region"},
	Vault:             {"version"},
	Kubernetes:        nil,
	GCPSecretManager:  nil,
	File:              nil,
}

// Parse reads one environment value. isRef is false for an ordinary value
// (anything not starting with `sekisho+` or `berglas-aws://`, compared
// without regard to case); then ref is zero and err nil. A value that
// starts like a reference is either a valid Ref or an error wrapping
// ErrMalformed that quotes the value (a reference names a secret, it
// never holds one) and says what is wrong.
func Parse(s string) (ref Ref, isRef bool, err error) {
	var rest string
	var scheme Scheme
	switch {
	case hasPrefixFold(s, Prefix):
		after := s[len(Prefix):]
		name, r, ok := strings.Cut(after, "://")
		if !ok {
			return Ref{}, true, malformed(s, "want %sSCHEME://…", Prefix)
		}
		scheme = Scheme(name)
		if _, known := params[scheme]; !known {
			return Ref{}, true, malformed(s, "unknown store %q (want one of %s)", name, schemeList())
		}
		if s[:len(Prefix)] != Prefix {
			return Ref{}, true, malformed(s, "write the prefix %q in lower case", Prefix)
		}
		rest = r
	case hasPrefixFold(s, BerglasAWSPrefix):
		if s[:len(BerglasAWSPrefix)] != BerglasAWSPrefix {
			return Ref{}, true, malformed(s, "write the prefix %q in lower case", BerglasAWSPrefix)
		}
		scheme, rest = AWSSecretsManager, s[len(BerglasAWSPrefix):]
	default:
		return Ref{}, false, nil
	}
	ref, err = parse(s, scheme, rest)
	if err != nil {
		return Ref{}, true, err
	}
	return ref, true, nil
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

func schemeList() string {
	names := make([]string, len(Schemes))
	for i, s := range Schemes {
		names[i] = string(s)
	}
	return strings.Join(names, ", ")
}

func malformed(raw, format string, args ...any) error {
	return fmt.Errorf("%w %q: %s", ErrMalformed, raw, fmt.Sprintf(format, args...))
}

// parse reads what follows SCHEME://: PATH[?QUERY][#KEY].
func parse(raw string, scheme Scheme, rest string) (Ref, error) {
	ref := Ref{Raw: raw, Scheme: scheme}
	for _, r := range raw {
		if unicode.IsControl(r) || unicode.IsSpace(r) {
			return Ref{}, malformed(raw, "a reference holds no spaces or control characters")
		}
	}
	rest, key, hasKey := strings.Cut(rest, "#")
	if hasKey {
		if key == "" {
			return Ref{}, malformed(raw, "empty #KEY")
		}
		if strings.ContainsAny(key, "#?") {
			return Ref{}, malformed(raw, "#KEY holds a '#' or '?'")
		}
		ref.Key = key
	}
	p, query, hasQuery := strings.Cut(rest, "?")
	if hasQuery {
		if err := ref.readQuery(raw, query); err != nil {
			return Ref{}, err
		}
	}
	if p == "" {
		return Ref{}, malformed(raw, "no secret named after %q", "://")
	}
	var err error
	switch scheme {
	case AWSSecretsManager:
		err = ref.awsSM(p)
	case AWSParameterStore:
		err = ref.awsSSM(p)
	case Vault:
		err = ref.vault(p)
	case Kubernetes:
		err = ref.kube(p)
	case GCPSecretManager:
		err = ref.gcp(p)
	case File:
		err = ref.file(p)
	}
	if err != nil {
		return Ref{}, malformed(raw, "%v", err)
	}
	// A KV secret is a map: without #KEY the variable would get every key
	// of it, which is never what one variable is for.
	if scheme == Vault && ref.Key == "" {
		return Ref{}, malformed(raw, "a vault reference needs #KEY (a KV secret holds several keys)")
	}
	return ref, nil
}

// readQuery reads the query parameters: each known one at most once,
// non-empty.
func (ref *Ref) readQuery(raw, query string) error {
	values, err := url.ParseQuery(query)
	if err != nil {
		return malformed(raw, "query: %v", err)
	}
	allowed := append([]string{"destination"}, params[ref.Scheme]...)
	for name, vs := range values {
		if !contains(allowed, name) {
			return malformed(raw, "unknown parameter %q (a %s reference takes %s)", name, ref.Scheme, strings.Join(allowed, ", "))
		}
		if len(vs) != 1 || vs[0] == "" {
			return malformed(raw, "parameter %q must be given once, with a value", name)
		}
	}
	get := func(name string) string {
		if vs := values[name]; len(vs) == 1 {
			return vs[0]
		}
		return ""
	}
	if d := get("destination"); d != "" {
		if d != TempFile && (!strings.HasPrefix(d, "/") || path.Clean(d) != d || d == "/") {
			return malformed(raw, "destination must be %q or an absolute, clean file path", TempFile)
		}
		ref.Destination = d
	}
	ref.Region = get("region")
	if ref.Region != "" && !regionRE.MatchString(ref.Region) {
		return malformed(raw, "region %q is not an AWS region name", ref.Region)
	}
	switch ref.Scheme {
	case AWSSecretsManager:
		ref.Version, ref.Stage = get("version-id"), get("version-stage")
		if ref.Version != "" && ref.Stage != "" {
			return malformed(raw, "give version-id or version-stage, not both")
		}
		if ref.Version != "" && !awsVersionRE.MatchString(ref.Version) {
			return malformed(raw, "version-id %q is not a version id", ref.Version)
		}
		if ref.Stage != "" && !awsVersionRE.MatchString(ref.Stage) {
			return malformed(raw, "version-stage %q is not a stage name", ref.Stage)
		}
	case AWSParameterStore, Vault:
		ref.Version = get("version")
		if ref.Version != "" {
			if n, err := strconv.ParseUint(ref.Version, 10, 31); err != nil || n == 0 || strconv.FormatUint(n, 10) != ref.Version {
				return malformed(raw, "version %q is not a positive number", ref.Version)
			}
		}
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

var (
	// Secrets Manager names: letters, digits and /_+=.@-; an ARN adds ':'.
	awsNameRE = regexp.MustCompile(`^[A-Za-z0-9/_+=.@:-]+$`)
	// Version ids are UUIDs (32–64 characters); stages are labels.
	awsVersionRE = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,256}$`)
	regionRE     = regexp.MustCompile(`^[a-z]{2}(-[a-z0-9]+)+-[0-9]+$`)
	// Parameter names: letters, digits and ._-/; an ARN adds ':'.
	ssmNameRE   = regexp.MustCompile(`^[A-Za-z0-9._/:-]+$`)
	gcpProjRE   = regexp.MustCompile(`^[a-z0-9][a-z0-9.:-]{0,62}$`)
	gcpSecretRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,255}$`)
	gcpVerRE    = regexp.MustCompile(`^(latest|[1-9][0-9]{0,18})$`)
)

// maxName bounds a secret's name: the stores' own limits are lower.
const maxName = 2048

func (ref *Ref) awsSM(p string) error {
	if len(p) > maxName {
		return fmt.Errorf("the name is longer than %d bytes", maxName)
	}
	if !awsNameRE.MatchString(p) {
		return errors.New("a Secrets Manager name or ARN has only letters, digits and the characters in '/_+=.@-:'")
	}
	if strings.HasPrefix(p, "arn:") && len(strings.Split(p, ":")) < 7 {
		return errors.New("an ARN is arn:PARTITION:secretsmanager:REGION:ACCOUNT:secret:NAME")
	}
	ref.Path = p
	return nil
}

func (ref *Ref) awsSSM(p string) error {
	if len(p) > maxName {
		return fmt.Errorf("the name is longer than %d bytes", maxName)
	}
	if !ssmNameRE.MatchString(p) {
		return errors.New("a parameter name has only letters, digits and ._-/ (a name starting with / is written with three slashes)")
	}
	if strings.Contains(p, "//") || (strings.HasSuffix(p, "/") && p != "/") || p == "/" {
		return errors.New("a parameter name has no empty path segments")
	}
	ref.Path = p
	return nil
}

func (ref *Ref) vault(p string) error {
	segs := strings.Split(p, "/")
	if len(segs) < 2 {
		return errors.New("want MOUNT/PATH (the mount is the first segment)")
	}
	for _, s := range segs {
		if s == "" || s == "." || s == ".." {
			return errors.New("MOUNT/PATH has an empty, '.' or '..' segment")
		}
	}
	ref.Path = p
	return nil
}

func (ref *Ref) kube(p string) error {
	segs := strings.Split(p, "/")
	if len(segs) != 3 {
		return errors.New("want NAMESPACE/SECRET/KEY")
	}
	if errs := validation.IsDNS1123Label(segs[0]); len(errs) > 0 {
		return fmt.Errorf("namespace %q: %s", segs[0], strings.Join(errs, "; "))
	}
	if errs := validation.IsDNS1123Subdomain(segs[1]); len(errs) > 0 {
		return fmt.Errorf("secret name %q: %s", segs[1], strings.Join(errs, "; "))
	}
	if errs := validation.IsConfigMapKey(segs[2]); len(errs) > 0 {
		return fmt.Errorf("key %q: %s", segs[2], strings.Join(errs, "; "))
	}
	ref.Path = p
	return nil
}

// gcp reads projects/P/secrets/S[/versions/V]. Path is always the full
// version name (with versions/latest when none is given); Version is V as
// written, or "" for latest.
func (ref *Ref) gcp(p string) error {
	segs := strings.Split(p, "/")
	if (len(segs) != 4 && len(segs) != 6) || segs[0] != "projects" || segs[2] != "secrets" || (len(segs) == 6 && segs[4] != "versions") {
		return errors.New("want projects/PROJECT/secrets/SECRET[/versions/VERSION]")
	}
	if !gcpProjRE.MatchString(segs[1]) {
		return fmt.Errorf("project %q is not a project id or number", segs[1])
	}
	if !gcpSecretRE.MatchString(segs[3]) {
		return fmt.Errorf("secret id %q has characters other than letters, digits, _ and -", segs[3])
	}
	version := "latest"
	if len(segs) == 6 {
		if !gcpVerRE.MatchString(segs[5]) {
			return fmt.Errorf("version %q is not a number or latest", segs[5])
		}
		version, ref.Version = segs[5], segs[5]
	}
	ref.Path = strings.Join(segs[:4], "/") + "/versions/" + version
	return nil
}

func (ref *Ref) file(p string) error {
	if !strings.HasPrefix(p, "/") {
		return errors.New("want an absolute path after three slashes (sekisho+file:///etc/app/secret)")
	}
	if path.Clean(p) != p {
		return errors.New("the path is not clean (no '//', '.', '..' or trailing '/')")
	}
	ref.Path = p
	return nil
}
