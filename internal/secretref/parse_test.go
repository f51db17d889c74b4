package secretref

import (
	"errors"
	"strings"
	"testing"
)

func TestParseRefs(t *testing.T) {
	tests := []struct {
		in   string
		want Ref
	}{
		{"sekisho+aws-sm://prod/db", Ref{Scheme: AWSSecretsManager, Path: "prod/db"}},
		{"sekisho+aws-sm://arn:aws:secretsmanager:eu-west-1:123456789012:secret:prod/db-AbCdEf?version-stage=AWSPREVIOUS#password",
			Ref{Scheme: AWSSecretsManager, Path: "arn:aws:secretsmanager:eu-west-1:123456789012:secret:prod/db-AbCdEf", Stage: "AWSPREVIOUS", Key: "password"}},
		{"sekisho+aws-sm://prod/db?version-id=0b0c1d2e-aaaa-bbbb-cccc-0123456789ab&region=eu-central-1",
			Ref{Scheme: AWSSecretsManager, Path: "prod/db", Version: "0b0c1d2e-aaaa-bbbb-cccc-0123456789ab", Region: "eu-central-1"}},
		{"berglas-aws://arn:aws:secretsmanager:us-east-1:123456789012:secret:app",
			Ref{Scheme: AWSSecretsManager, Path: "arn:aws:secretsmanager:us-east-1:123456789012:secret:app"}},
		{"berglas-aws://app#token", Ref{Scheme: AWSSecretsManager, Path: "app", Key: "token"}},
		{"sekisho+aws-ssm:///prod/db/password", Ref{Scheme: AWSParameterStore, Path: "/prod/db/password"}},
		{"sekisho+aws-ssm://plain-name?version=3&region=us-west-2", Ref{Scheme: AWSParameterStore, Path: "plain-name", Version: "3", Region: "us-west-2"}},
		{"sekisho+vault://secret/app#password", Ref{Scheme: Vault, Path: "secret/app", Key: "password"}},
		{"sekisho+vault://kv/team/app/db?version=7#password", Ref{Scheme: Vault, Path: "kv/team/app/db", Version: "7", Key: "password"}},
		{"sekisho+k8s://prod/db-credentials/password", Ref{Scheme: Kubernetes, Path: "prod/db-credentials/password"}},
		{"sekisho+k8s://prod/app/config.json#url", Ref{Scheme: Kubernetes, Path: "prod/app/config.json", Key: "url"}},
		{"sekisho+gcp-sm://projects/my-proj/secrets/db", Ref{Scheme: GCPSecretManager, Path: "projects/my-proj/secrets/db/versions/latest"}},
		{"sekisho+gcp-sm://projects/123/secrets/db/versions/4#user", Ref{Scheme: GCPSecretManager, Path: "projects/123/secrets/db/versions/4", Version: "4", Key: "user"}},
		{"sekisho+file:///run/secrets/db", Ref{Scheme: File, Path: "/run/secrets/db"}},
		{"sekisho+file:///run/secrets/db.json#password", Ref{Scheme: File, Path: "/run/secrets/db.json", Key: "password"}},
		{"sekisho+file:///run/secrets/cert?destination=tempfile", Ref{Scheme: File, Path: "/run/secrets/cert", Destination: TempFile}},
		{"sekisho+vault://secret/tls?destination=/etc/tls/key.pem#key", Ref{Scheme: Vault, Path: "secret/tls", Destination: "/etc/tls/key.pem", Key: "key"}},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, isRef, err := Parse(tt.in)
			if err != nil || !isRef {
				t.Fatalf("Parse: isRef %v, err %v", isRef, err)
			}
			tt.want.Raw = tt.in
			if got != tt.want {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

// TestParseOrdinary: values that are not references pass through, among
// them URLs of the very schemes references use.
func TestParseOrdinary(t *testing.T) {
	for _, in := range []string{"", "hunter2", "file:///etc/app.conf", "vault://secret/app", "k8s://a/b/c",
		"aws-sm://x", "https://example.com/?a=b#c", "sekisho", "x sekisho+file:///a", "berglas://x"} {
		ref, isRef, err := Parse(in)
		if isRef || err != nil || ref != (Ref{}) {
			t.Errorf("Parse(%q) = %+v, %v, %v; want an ordinary value", in, ref, isRef, err)
		}
	}
}

// TestParseMalformed: a value that starts like a reference and is not a
// valid one is an error saying why, never an ordinary value.
func TestParseMalformed(t *testing.T) {
	tests := []struct{ in, why string }{
		{"sekisho+", "SCHEME://"},
		{"sekisho+friends", "SCHEME://"},
		{"sekisho+aws-sm:prod/db", "SCHEME://"},
		{"sekisho+s3://bucket/key", `unknown store "s3"`},
		{"SEKISHO+file:///a", "lower case"},
		{"Berglas-AWS://x", "lower case"},
		{"sekisho+aws-sm://", "no secret named"},
		{"sekisho+vault://secret/app", "needs #KEY"},
		{"sekisho+aws-sm://?region=us-east-1", "no secret named"},
		{"sekisho+aws-sm://prod/db?verison-id=1", `unknown parameter "verison-id"`},
		{"sekisho+aws-sm://prod/db?version=1", `unknown parameter "version"`},
		{"sekisho+aws-sm://prod/db?version-id=a&version-stage=AWSCURRENT", "not both"},
		{"sekisho+aws-sm://prod/db?region=us-east-1&region=eu-west-1", "given once"},
		{"sekisho+aws-sm://prod/db?region=", "given once"},
		{"sekisho+aws-sm://prod/db?region=Mars", "not an AWS region"},
		{"sekisho+aws-sm://prod/db?region=us-east-1;x=1", "query"},
		{"sekisho+aws-sm://prod db", "spaces"},
		{"sekisho+aws-sm://prod/db\n", "control"},
		{"sekisho+aws-sm://prod/d%b", "Secrets Manager name"},
		{"sekisho+aws-sm://arn:aws:secretsmanager:x", "ARN"},
		{"sekisho+aws-sm://" + strings.Repeat("a", 2049), "longer than"},
		{"sekisho+aws-sm://prod/db#", "empty #KEY"},
		{"sekisho+aws-sm://prod/db#a#b", "'#'"},
		{"sekisho+aws-ssm://prod//db", "empty path segments"},
		{"sekisho+aws-ssm:///prod/db?version=0", "positive number"},
		{"sekisho+aws-ssm:///prod/db?version=01", "positive number"},
		{"sekisho+aws-ssm:///prod/db?version=latest", "positive number"},
		{"sekisho+aws-ssm:///prod/db?version-stage=x", "unknown parameter"},
		{"sekisho+vault://secret", "MOUNT/PATH"},
		{"sekisho+vault://secret/", "empty"},
		{"sekisho+vault://secret/../sys", "'..'"},
		{"sekisho+vault://secret/app?version=-1", "positive number"},
		{"sekisho+vault://secret/app?region=us-east-1", "unknown parameter"},
		{"sekisho+k8s://prod/db", "NAMESPACE/SECRET/KEY"},
		{"sekisho+k8s://prod/db/a/b", "NAMESPACE/SECRET/KEY"},
		{"sekisho+k8s://Prod/db/key", "namespace"},
		{"sekisho+k8s://prod/DB/key", "secret name"},
		{"sekisho+k8s://prod/db/k:y", "key"},
		{"sekisho+k8s://prod/db/key?version=2", "unknown parameter"},
		{"sekisho+gcp-sm://my-proj/db", "projects/PROJECT"},
		{"sekisho+gcp-sm://projects/p/secrets/s/versions", "projects/PROJECT"},
		{"sekisho+gcp-sm://projects/p/secrets/s/versions/newest", "not a number or latest"},
		{"sekisho+gcp-sm://projects/P!/secrets/s", "project"},
		{"sekisho+gcp-sm://projects/p/secrets/a.b", "secret id"},
		{"sekisho+file://etc/app", "absolute path"},
		{"sekisho+file://host/etc/app", "absolute path"},
		{"sekisho+file:///etc/../app", "not clean"},
		{"sekisho+file:///etc/app/", "not clean"},
		{"sekisho+file:///a?destination=tmp", "destination"},
		{"sekisho+file:///a?destination=relative/path", "destination"},
		{"sekisho+file:///a?destination=/", "destination"},
		{"sekisho+file:///a?destination=/x/../y", "destination"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			ref, isRef, err := Parse(tt.in)
			if !isRef || err == nil {
				t.Fatalf("Parse = %+v, isRef %v, err %v; want a malformed reference", ref, isRef, err)
			}
			if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tt.why) {
				t.Errorf("error %q; want ErrMalformed saying %q", err, tt.why)
			}
			if ref != (Ref{}) {
				t.Errorf("ref %+v with an error", ref)
			}
		})
	}
}

// FuzzParse: Parse never panics; a reference it accepts is one of the
// known schemes with a path, its Raw is the input, and an ordinary value
// is one that does not start like a reference.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"sekisho+aws-sm://prod/db?version-stage=AWSCURRENT&region=us-east-1#k",
		"sekisho+aws-ssm:///a/b?version=2", "sekisho+vault://secret/app#password", "sekisho+k8s://ns/s/k",
		"sekisho+gcp-sm://projects/p/secrets/s/versions/3", "sekisho+file:///run/x?destination=tempfile",
		"berglas-aws://app", "file:///etc/app.conf", "plain", "sekisho+x://"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ref, isRef, err := Parse(s)
		startsLike := hasPrefixFold(s, Prefix) || hasPrefixFold(s, BerglasAWSPrefix)
		if isRef != startsLike {
			t.Fatalf("isRef %v for %q", isRef, s)
		}
		if err != nil {
			if !errors.Is(err, ErrMalformed) || ref != (Ref{}) {
				t.Fatalf("error %v with ref %+v", err, ref)
			}
			return
		}
		if !isRef {
			if ref != (Ref{}) {
				t.Fatalf("ordinary value gave %+v", ref)
			}
			return
		}
		if ref.Raw != s || ref.Path == "" || !contains(schemeList2(), string(ref.Scheme)) {
			t.Fatalf("accepted %q as %+v", s, ref)
		}
		if ref.Destination != "" && ref.Destination != TempFile && !strings.HasPrefix(ref.Destination, "/") {
			t.Fatalf("destination %q", ref.Destination)
		}
		// A reference parses to the same thing again.
		again, _, err := Parse(ref.Raw)
		if err != nil || again != ref {
			t.Fatalf("reparse %+v, %v", again, err)
		}
	})
}

func schemeList2() []string {
	var out []string
	for _, s := range Schemes {
		out = append(out, string(s))
	}
	return out
}
