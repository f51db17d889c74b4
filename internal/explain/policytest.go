package explain

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"

	yaml "go.yaml.in/yaml/v3"

	"github.com/sekisho/sekisho/internal/snapshot"
)

// Suite is a policy test file: a config and the decisions expected of it.
type Suite struct {
	// Config is the config file to test, relative to the suite file.
	Config string `yaml:"config"`
	Cases  []Case `yaml:"cases"`
}

// Case is one request with its expected decision.
type Case struct {
	Name    string  `yaml:"name"`
	Request Request `yaml:",inline"`
	// Expect is allow, deny (401 or 403), or a status: 400, 401, 403, 404.
	Expect string `yaml:"expect"`
}

// LoadSuite reads a suite file strictly (unknown keys are errors).
func LoadSuite(path string) (*Suite, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read policy tests: %w", err)
	}
	var s Suite
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&s); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%s: no test cases", path)
		}
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(s.Cases) == 0 {
		return nil, fmt.Errorf("%s: no test cases", path)
	}
	for i, c := range s.Cases {
		if !validExpect(c.Expect) {
			return nil, fmt.Errorf("%s: cases[%d] (%s): expect must be allow, deny, 400, 401, 403 or 404, not %q", path, i, c.Name, c.Expect)
		}
	}
	if s.Config != "" && !filepath.IsAbs(s.Config) {
		s.Config = filepath.Join(filepath.Dir(path), s.Config)
	}
	return &s, nil
}

func validExpect(e string) bool {
	switch e {
	case "allow", "deny", "400", "401", "403", "404":
		return true
	}
	return false
}

// Failure is a case whose decision differs from the expected one.
type Failure struct {
	Case   Case
	Report *Report
	Err    error
}

// Run evaluates every case and returns those that failed.
func (s *Suite) Run(ctx context.Context, snap *snapshot.Snapshot) []Failure {
	var fails []Failure
	for _, c := range s.Cases {
		rep, err := Explain(ctx, snap, c.Request)
		if err != nil {
			fails = append(fails, Failure{Case: c, Err: err})
			continue
		}
		if !matches(c.Expect, rep) {
			fails = append(fails, Failure{Case: c, Report: rep})
		}
	}
	return fails
}

func matches(expect string, rep *Report) bool {
	switch expect {
	case "allow":
		return rep.Decision == "allow"
	case "deny":
		return rep.Status == 401 || rep.Status == 403
	}
	return strconv.Itoa(rep.Status) == expect
}
