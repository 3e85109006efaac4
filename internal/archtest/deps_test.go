// Package archtest holds tests of the repository's shape rather than of
// any one package: which way dependencies may point.
package archtest

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"sort"
	"strings"
	"testing"
)

const module = "github.com/hullvm/hull"

// pkg is the part of `go list -json` output these tests read.
type pkg struct {
	ImportPath string
	Imports    []string
	Deps       []string
	Error      *struct{ Err string }
}

// goList runs `go list -json` with args and decodes its package stream.
func goList(t *testing.T, args ...string) []pkg {
	t.Helper()
	gotool, err := exec.LookPath("go")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("go tool not in PATH (CI=true, so this is a failure): %v", err)
		}
		t.Skipf("go tool not in PATH: %v", err)
	}
	cmd := exec.Command(gotool, append([]string{"list", "-e", "-json"}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list %s: %v\n%s", strings.Join(args, " "), err, stderr.Bytes())
	}
	var pkgs []pkg
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p pkg
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("decoding go list output: %v", err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

// forbidden reports the deps that equal or lie beneath a banned path.
func forbidden(deps []string, banned []string) []string {
	var out []string
	for _, d := range deps {
		for _, b := range banned {
			if d == b || strings.HasPrefix(d, b+"/") {
				out = append(out, d)
			}
		}
	}
	sort.Strings(out)
	return out
}

func TestGuestInitStaysSmall(t *testing.T) {
	// The guest init is PID 1 inside every VM: it must stay small, start
	// fast and hold no host-side code (CLI, QEMU, gateway, image building,
	// kernel import, ELF analysis) nor the libraries only the host needs
	// (cobra for the CLI, yaml for hull.yaml). What it shares with the host
	// is plain data and the lockdown: manifest, control, lockdown.
	banned := []string{
		module + "/internal/cli",
		module + "/internal/runner",
		module + "/internal/vmm",
		module + "/internal/netgw",
		module + "/internal/builder",
		module + "/internal/kernel",
		module + "/internal/elfdeps",
		module + "/internal/image",
		"github.com/spf13/cobra",
		"gopkg.in/yaml.v3",
	}
	for _, p := range goList(t, module+"/cmd/hull-init", module+"/internal/guestinit") {
		if p.Error != nil {
			t.Fatalf("%s: %s", p.ImportPath, p.Error.Err)
		}
		if bad := forbidden(append(p.Deps, p.ImportPath), banned); len(bad) > 0 {
			t.Errorf("%s depends on %q; want none of %q", p.ImportPath, bad, banned)
		}
	}
}

func TestPolicyIndependentOfGatewayAndVMs(t *testing.T) {
	// The egress policy model must be testable and reusable on its own,
	// without starting the gateway or a VM: so it imports neither.
	banned := []string{
		module + "/internal/netgw",
		module + "/internal/vmm",
		module + "/internal/runner",
	}
	pkgs := goList(t, module+"/internal/policy")
	if len(pkgs) != 1 {
		t.Fatalf("go list returned %d packages for internal/policy, want 1", len(pkgs))
	}
	p := pkgs[0]
	if p.Error != nil {
		if _, err := os.Stat("../policy"); errors.Is(err, os.ErrNotExist) {
			t.Skipf("internal/policy does not exist yet (%s); the rule applies once it does", p.Error.Err)
		}
		t.Fatalf("internal/policy: %s", p.Error.Err)
	}
	if bad := forbidden(p.Deps, banned); len(bad) > 0 {
		t.Errorf("internal/policy depends on %q; want none of %q", bad, banned)
	}
}

func TestNothingImportsTheCLI(t *testing.T) {
	// The CLI is the top of the graph: it parses flags and calls the
	// libraries. A library importing it would pull terminal handling and
	// cobra into code that must stay usable (and testable) without them.
	for _, p := range goList(t, module+"/internal/...") {
		if p.ImportPath == module+"/internal/cli" {
			continue
		}
		if bad := forbidden(p.Imports, []string{module + "/internal/cli"}); len(bad) > 0 {
			t.Errorf("%s imports %q; only cmd/hull may", p.ImportPath, bad)
		}
	}
}

func TestForbiddenMatchesByPathElement(t *testing.T) {
	got := forbidden([]string{"a/vmm", "a/vmm/qemu", "a/vmmx", "b"}, []string{"a/vmm"})
	if want := []string{"a/vmm", "a/vmm/qemu"}; strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("forbidden = %q, want %q (a/vmmx is another package)", got, want)
	}
}
