package policy

import (
	"go/build"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestDependencies keeps policy a leaf: it must import neither the
// gateway nor any VM, runner or CLI code. The policy is the part of the
// network a security reviewer reads; it has to be checkable without the
// machinery that enforces it, and a dependency the other way round would
// let enforcement details leak into the rules' meaning.
func TestDependencies(t *testing.T) {
	const module = "github.com/hullvm/hull/"
	forbidden := []string{"internal/netgw", "internal/vmm", "internal/runner", "internal/cli", "internal/guestinit", "internal/control"}

	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	seen := map[string]bool{}
	var walk func(pkg string, chain []string)
	walk = func(pkg string, chain []string) {
		if seen[pkg] {
			return
		}
		seen[pkg] = true
		rel := strings.TrimPrefix(pkg, module)
		for _, f := range forbidden {
			if rel == f || strings.HasPrefix(rel, f+"/") {
				t.Errorf("policy depends on %s via %s; policy must not import gateway or VM code", pkg, strings.Join(chain, " -> "))
			}
		}
		bp, err := build.ImportDir(filepath.Join(root, filepath.FromSlash(rel)), 0)
		if err != nil {
			t.Fatalf("reading %s: %v", pkg, err)
		}
		for _, imp := range bp.Imports {
			if strings.HasPrefix(imp, module) {
				walk(imp, append(chain, imp))
			}
		}
	}
	walk(module+"internal/policy", []string{"internal/policy"})
}
