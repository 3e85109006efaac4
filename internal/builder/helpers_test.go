package builder_test

import (
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hullvm/hull/internal/builder"
	"github.com/hullvm/hull/internal/image"
	"github.com/hullvm/hull/internal/kernel"
	"github.com/hullvm/hull/internal/spec"
)

// needTool finds a build tool; without it the test is skipped, except in
// CI where a missing tool is a broken machine.
func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s not installed (CI=true, so this is a failure): %v", name, err)
		}
		t.Skipf("%s not installed: %v", name, err)
	}
	return p
}

// tempDir is t.TempDir with symlinks resolved, so host paths are physical.
func tempDir(t *testing.T) string {
	t.Helper()
	d, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func run(t *testing.T, dir string, env []string, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

func writeFile(t *testing.T, p, content string, mode os.FileMode) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	return p
}

// gcc compiles C source src to out (sources sit beside out, named .c).
func gcc(t *testing.T, out, src string, args ...string) string {
	t.Helper()
	cc := needTool(t, "gcc")
	srcFile := writeFile(t, out+".c", src, 0o644)
	run(t, filepath.Dir(out), nil, cc, append([]string{"-o", out, srcFile}, args...)...)
	return out
}

const helloC = "#include <stdio.h>\nint main(void){puts(\"hi\");return 0;}\n"

// helloProgram builds a dynamic glibc program in its own temp dir.
func helloProgram(t *testing.T) string {
	t.Helper()
	return gcc(t, filepath.Join(tempDir(t), "hello"), helloC)
}

// goProgram builds a static Go program (CGO_ENABLED=0).
func goProgram(t *testing.T) string {
	t.Helper()
	gotool := needTool(t, "go")
	dir := tempDir(t)
	writeFile(t, filepath.Join(dir, "main.go"), "package main\n\nimport \"fmt\"\n\nfunc main() { fmt.Println(\"hi\") }\n", 0o644)
	out := filepath.Join(dir, "gohello")
	run(t, dir, []string{"CGO_ENABLED=0", "GOFLAGS=-buildvcs=false"}, gotool, "build", "-o", out, "main.go")
	return out
}

// options wraps a spec (normalized and validated here) with a fake
// kernel bundle whose drivers are built in, and a fake init file.
func options(t *testing.T, s *spec.Spec) builder.Options {
	t.Helper()
	s.Normalize()
	if err := s.Validate(); err != nil {
		t.Fatalf("spec: %v", err)
	}
	return builder.Options{
		Spec:   s,
		Kernel: &kernel.Bundle{Name: "test-kernel", Digest: strings.Repeat("ab", 32), Release: "6.1.0-test", Builtin: true},
		Init:   writeFile(t, filepath.Join(tempDir(t), "hull-init"), "\x7fELF fake init", 0o755),
	}
}

func plan(t *testing.T, o builder.Options) *builder.PlanResult {
	t.Helper()
	p, err := builder.Plan(o)
	if err != nil {
		t.Fatalf("Plan: %v", err)
	}
	return p
}

// entry returns the tree entry at p, failing when there is none.
func entry(t *testing.T, tr *image.Tree, p string) *image.Entry {
	t.Helper()
	e, ok := tr.Lookup(p)
	if !ok {
		t.Fatalf("image has no %s", p)
	}
	return e
}

// withBase returns the tree paths whose last element is base.
func withBase(tr *image.Tree, base string) []string {
	var out []string
	for _, e := range tr.Entries() {
		if filepath.Base(e.Path) == base {
			out = append(out, e.Path)
		}
	}
	return out
}

// resolve follows the tree's symlinks, the last component included, as
// the guest kernel would when opening p.
func resolve(t *testing.T, tr *image.Tree, p string) *image.Entry {
	t.Helper()
	for hops := 0; hops < 40; hops++ {
		e, ok := tr.Lookup(p)
		if !ok {
			t.Fatalf("image has no %s", p)
		}
		if e.Type != image.Symlink {
			return e
		}
		if path.IsAbs(e.Link) {
			p = e.Link
		} else {
			p = path.Join(path.Dir(e.Path), e.Link)
		}
	}
	t.Fatalf("too many symlinks resolving %s", p)
	return nil
}
