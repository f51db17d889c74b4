package main

import (
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sekisho/sekisho/internal/baotest"
	"github.com/sekisho/sekisho/internal/kumotest"
)

// BenchmarkExecTenReferences is `sekisho exec` as a pod starts it: ten
// references, five in AWS Secrets Manager (kumo, credentials by the IRSA
// web-identity exchange) and five in OpenBao KV v2 (a token), resolved and
// then the program exec'd, timed from the process start to the program's
// exit (the program is /bin/true). It reports the 50th and 99th
// percentile over the runs; run it with -benchtime=100x for the figure in
// docs/performance.md.
func BenchmarkExecTenReferences(b *testing.B) {
	kumo := kumotest.Start(b)
	bao := baotest.Start(b)
	env := kumo.WebIdentityEnv(b, "eyJhbGciOiJSUzI1NiJ9.e30.c2ln")
	env["BAO_ADDR"], env["BAO_TOKEN"] = bao.Addr, bao.RootToken
	for i := range 5 {
		s := kumo.CreateSecret(b, fmt.Sprintf("bench/app-%d", i), fmt.Sprintf("aws-value-%d", i))
		env[fmt.Sprintf("AWS_SECRET_%d", i)] = "sekisho+aws-sm://" + s.ARN
		bao.Put(b, "secret", fmt.Sprintf("bench/app-%d", i), map[string]any{"password": fmt.Sprintf("bao-value-%d", i)})
		env[fmt.Sprintf("BAO_SECRET_%d", i)] = fmt.Sprintf("sekisho+vault://secret/bench/app-%d#password", i)
	}
	environ := kumotest.Environ(env)
	run := func() (time.Duration, string, error) {
		cmd := exec.Command(binary, "exec", "--", "/bin/sh", "-c", `test "$AWS_SECRET_4" = aws-value-4 && test "$BAO_SECRET_4" = bao-value-4`)
		cmd.Env = environ
		start := time.Now()
		out, err := cmd.CombinedOutput()
		return time.Since(start), string(out), err
	}
	if _, out, err := run(); err != nil { // also warms the page cache
		b.Fatalf("sekisho exec: %v\n%s", err, out)
	}
	var took []time.Duration
	for b.Loop() {
		d, out, err := run()
		if err != nil {
			b.Fatalf("sekisho exec: %v\n%s", err, out)
		}
		if strings.Contains(out, "value-") {
			b.Fatalf("output holds a secret value:\n%s", out)
		}
		took = append(took, d)
	}
	slices.Sort(took)
	b.ReportMetric(float64(took[len(took)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(took[len(took)*99/100].Microseconds())/1000, "p99-ms")
}
