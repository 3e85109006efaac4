package elfdeps

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// FuzzResolve feeds arbitrary bytes to Resolve as the program, as the
// interpreter and as a library, inside a throwaway sysroot. Resolve may
// refuse them, but must not panic, hang or break its output invariants.
func FuzzResolve(f *testing.F) {
	seed := fakeELF{interp: "/lib64/ld-linux-x86-64.so.2", needed: []string{"libfuzz.so", "libc.so.6"},
		runpath: "$ORIGIN/../lib", soname: "libfuzz.so", pthread: true}.bytes()
	f.Add(seed)
	f.Add(seed[:100])
	f.Add(fakeELF{class: elf.ELFCLASS32, machine: elf.EM_386}.bytes())
	f.Add([]byte("#!/usr/bin/env python3\nprint(1)\n"))
	f.Add([]byte{})
	// A real, small, stripped program when a compiler is around; it is not
	// committed to the corpus because it is larger than the seeds should be.
	if cc, err := exec.LookPath("gcc"); err == nil {
		dir := f.TempDir()
		out := filepath.Join(dir, "hello")
		src := filepath.Join(dir, "hello.c")
		if os.WriteFile(src, []byte(helloC), 0o644) == nil &&
			exec.Command(cc, "-Os", "-s", "-o", out, src).Run() == nil {
			if b, err := os.ReadFile(out); err == nil {
				f.Add(b)
			}
		}
	}

	// One sysroot per fuzzing process, rewritten in place for each input:
	// creating and removing a tree per input made the fuzzer I/O-bound. The
	// interpreter and library paths are hard links, so one write puts the
	// input at all three places.
	root := f.TempDir()
	prog := filepath.Join(root, "prog")
	if err := os.WriteFile(prog, nil, 0o755); err != nil {
		f.Fatal(err)
	}
	for _, p := range []string{"usr/lib/x86_64-linux-gnu/libfuzz.so", "usr/lib64/ld-linux-x86-64.so.2"} {
		host := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(host), 0o755); err != nil {
			f.Fatal(err)
		}
		if err := os.Link(prog, host); err != nil {
			f.Fatal(err)
		}
	}
	for _, l := range [][2]string{{"lib64", "usr/lib64"}, {"lib", "/usr/lib"}} {
		if err := os.Symlink(l[1], filepath.Join(root, l[0])); err != nil {
			f.Fatal(err)
		}
	}

	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.WriteFile(prog, data, 0o755); err != nil {
			t.Fatal(err)
		}
		r := &Resolver{Root: root}
		c, err := r.Resolve("/prog")
		if err != nil {
			if err.Error() == "" || strings.Contains(err.Error(), "\n") {
				t.Errorf("error message must be one non-empty line: %q", err)
			}
			return
		}
		if !slices.IsSortedFunc(c.Files, func(a, b File) int { return strings.Compare(a.Path, b.Path) }) {
			t.Errorf("Files not sorted")
		}
		for _, f := range c.Files {
			if !strings.HasPrefix(f.Path, "/") || f.Path != filepath.Clean(f.Path) {
				t.Errorf("bad Path %q", f.Path)
			}
			if strings.Contains(f.Reason, "\n") {
				t.Errorf("Reason spans lines: %q", f.Reason)
			}
		}
		_ = r.AddLibrary(c, "libfuzz.so", "fuzz")
	})
}
