package elfdeps

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// needTool returns the path of a build tool; without it the test is skipped,
// except in CI where a missing tool is a broken machine.
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

// tempDir is t.TempDir with symlinks resolved, so expected paths are physical.
func tempDir(t *testing.T) string {
	t.Helper()
	d, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// run runs a build command, failing the test with its output.
func run(t *testing.T, dir string, env []string, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// gcc compiles C source src into out with extra arguments.
func gcc(t *testing.T, out, src string, args ...string) {
	t.Helper()
	cc := needTool(t, "gcc")
	dir := filepath.Dir(out)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	srcFile := out + ".c"
	if err := os.WriteFile(srcFile, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, dir, nil, cc, append([]string{"-o", out, srcFile}, args...)...)
}

const helloC = "#include <stdio.h>\nint main(void){puts(\"hi\");return 0;}\n"

// fileIndex maps Path to File and fails on duplicates or unsorted input.
func fileIndex(t *testing.T, c *Closure) map[string]File {
	t.Helper()
	m := map[string]File{}
	if !slices.IsSortedFunc(c.Files, func(a, b File) int { return strings.Compare(a.Path, b.Path) }) {
		t.Errorf("Files not sorted by Path")
	}
	for _, f := range c.Files {
		if _, dup := m[f.Path]; dup {
			t.Errorf("duplicate Path %s", f.Path)
		}
		m[f.Path] = f
	}
	return m
}

// checkInvariants verifies what callers rely on: paths are clean, absolute and
// physical; links are links with the raw target recorded and lead to
// something in the closure; regular entries are regular files.
func checkInvariants(t *testing.T, r *Resolver, c *Closure) {
	t.Helper()
	idx := fileIndex(t, c)
	realRoot, err := filepath.EvalSymlinks(r.HostPath("/"))
	if err != nil {
		t.Fatal(err)
	}
	if f, ok := idx[c.Program]; !ok || f.Kind != KindProgram {
		t.Errorf("Program %s missing from Files or not KindProgram: %+v", c.Program, f)
	}
	for _, f := range c.Files {
		if f.Path != filepath.Clean(f.Path) || !filepath.IsAbs(f.Path) {
			t.Errorf("%s: not absolute and clean", f.Path)
		}
		if f.Reason == "" {
			t.Errorf("%s: empty Reason", f.Path)
		}
		dir := filepath.Dir(f.Path)
		realDir, err := filepath.EvalSymlinks(r.HostPath(dir))
		if err != nil {
			t.Errorf("%s: parent: %v", f.Path, err)
		} else if want := filepath.Join(realRoot, dir); realDir != want {
			t.Errorf("%s: parent is not physical: resolves to %s, want %s", f.Path, realDir, want)
		}
		fi, err := os.Lstat(r.HostPath(f.Path))
		if err != nil {
			t.Errorf("%s: %v", f.Path, err)
			continue
		}
		isLink := fi.Mode()&os.ModeSymlink != 0
		if isLink != (f.Kind == KindLink) {
			t.Errorf("%s: kind %v but symlink=%v", f.Path, f.Kind, isLink)
		}
		if f.Kind != KindLink {
			if f.Link != "" {
				t.Errorf("%s: Link %q on a %v", f.Path, f.Link, f.Kind)
			}
			continue
		}
		if target, _ := os.Readlink(r.HostPath(f.Path)); target != f.Link {
			t.Errorf("%s: Link = %q, on disk %q", f.Path, f.Link, target)
		}
		// The link must lead to a regular entry of the closure or to a
		// directory holding entries; otherwise the image would carry a dangler.
		w, err := r.walk(f.Path)
		if err != nil {
			t.Errorf("%s: %v", f.Path, err)
			continue
		}
		found := false
		for _, g := range c.Files {
			if (g.Kind != KindLink && g.Path == w.phys) || strings.HasPrefix(g.Path, w.phys+"/") {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("%s -> %s: leads to %s, which holds nothing of the closure", f.Path, f.Link, w.phys)
		}
	}
}

// pathsOf returns the Paths of files of kind k.
func pathsOf(c *Closure, k Kind) []string {
	var out []string
	for _, f := range c.Files {
		if f.Kind == k {
			out = append(out, f.Path)
		}
	}
	return out
}
