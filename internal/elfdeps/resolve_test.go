package elfdeps

import (
	"debug/elf"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestKindString(t *testing.T) {
	tests := []struct {
		k    Kind
		want string
	}{
		{KindProgram, "program"},
		{KindInterp, "interp"},
		{KindLibrary, "library"},
		{KindLink, "link"},
		{Kind(9), "Kind(9)"},
	}
	for _, tt := range tests {
		if got := tt.k.String(); got != tt.want {
			t.Errorf("Kind(%d).String() = %q, want %q", int(tt.k), got, tt.want)
		}
	}
}

// TestResolveHostPrograms builds small C programs with the host toolchain and
// resolves them against the host's "/".
func TestResolveHostPrograms(t *testing.T) {
	threadsC := "#include <pthread.h>\nstatic void *f(void *a){return a;}\n" +
		"int main(void){pthread_t t; pthread_create(&t,0,f,0); return pthread_join(t,0);}\n"
	tests := []struct {
		name        string
		src         string
		args        []string
		wantStatic  bool
		wantLibc    string
		wantThreads bool
	}{
		{"static", helloC, []string{"-static"}, true, "", false},
		{"static-pie", helloC, []string{"-static-pie"}, true, "", false},
		{"dynamic", helloC, nil, false, "glibc", false},
		{"dynamic-threads", threadsC, []string{"-pthread"}, false, "glibc", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := tempDir(t)
			prog := filepath.Join(dir, "prog")
			gcc(t, prog, tt.src, tt.args...)
			r := &Resolver{}
			c, err := r.Resolve(prog)
			if err != nil {
				t.Fatalf("Resolve: %v", err)
			}
			checkInvariants(t, r, c)
			if c.Program != prog {
				t.Errorf("Program = %s, want %s", c.Program, prog)
			}
			if c.Machine != elf.EM_X86_64 {
				t.Errorf("Machine = %v, want EM_X86_64", c.Machine)
			}
			if c.Static != tt.wantStatic || c.Libc != tt.wantLibc || c.Threads != tt.wantThreads {
				t.Errorf("Static, Libc, Threads = %v, %q, %v; want %v, %q, %v",
					c.Static, c.Libc, c.Threads, tt.wantStatic, tt.wantLibc, tt.wantThreads)
			}
			if tt.wantStatic {
				if c.Interp != "" || len(c.Files) != 1 {
					t.Errorf("static closure: Interp %q, Files %+v; want only the program", c.Interp, c.Files)
				}
				return
			}
			checkHostGlibc(t, c)
		})
	}
}

// checkHostGlibc checks the loader and libc entries of a dynamic glibc
// program against what the host file system says.
func checkHostGlibc(t *testing.T, c *Closure) {
	t.Helper()
	const interp = "/lib64/ld-linux-x86-64.so.2"
	if c.Interp != interp {
		t.Fatalf("Interp = %q, want %q", c.Interp, interp)
	}
	idx := fileIndex(t, c)
	realInterp, err := filepath.EvalSymlinks(interp)
	if err != nil {
		t.Fatal(err)
	}
	if f := idx[realInterp]; f.Kind != KindInterp {
		t.Errorf("interpreter %s: got %+v, want KindInterp", realInterp, f)
	}
	var libc string
	for _, p := range pathsOf(c, KindLibrary) {
		if filepath.Base(p) == "libc.so.6" {
			libc = p
		}
	}
	if libc == "" {
		t.Fatalf("no libc.so.6 among %v", pathsOf(c, KindLibrary))
	}
	// Every symlink on the way from PT_INTERP to the loader (Debian:
	// /lib64 -> usr/lib64, /usr/lib64/ld-linux... -> /lib/x86_64-linux-gnu/...,
	// /lib -> usr/lib) must be a KindLink with the raw target.
	for _, p := range []string{"/lib64", "/lib", "/usr/lib64/ld-linux-x86-64.so.2"} {
		target, err := os.Readlink(p)
		if err != nil {
			continue // not a symlink on this host
		}
		if f := idx[p]; f.Kind != KindLink || f.Link != target {
			t.Errorf("%s: got %+v, want KindLink to %q", p, f, target)
		}
	}
}

// privateLibs builds, under dir: lib/libinner.so, lib/libgreet.so (needs
// libinner, no paths of its own), alt/libgreet.so (same soname, also needs
// libinner) and bin/hello linked with $ORIGIN/../lib using dtags.
func privateLibs(t *testing.T, dir, dtags string) (prog string) {
	t.Helper()
	lib, alt := filepath.Join(dir, "lib"), filepath.Join(dir, "alt")
	gcc(t, filepath.Join(lib, "libinner.so"), "int inner(void){return 1;}\n", "-shared", "-fPIC")
	greet := "int inner(void);\nint greet(void){return inner()+1;}\n"
	gcc(t, filepath.Join(lib, "libgreet.so"), greet, "-shared", "-fPIC", "-L"+lib, "-linner")
	gcc(t, filepath.Join(alt, "libgreet.so"), greet+"int alt;\n", "-shared", "-fPIC", "-L"+lib, "-linner")
	prog = filepath.Join(dir, "bin", "hello")
	gcc(t, prog, "int greet(void);\nint main(void){return greet();}\n",
		"-L"+lib, "-lgreet", "-Wl,"+dtags, "-Wl,-rpath,$ORIGIN/../lib")
	return prog
}

func TestRpathRunpath(t *testing.T) {
	tests := []struct {
		name        string
		dtags       string
		libPath     []string // relative to the fixture dir
		wantTag     elf.DynTag
		wantGreet   string // dir of libgreet.so
		wantInner   string // dir of libinner.so
		wantMissing string // DT_NEEDED that cannot be found
	}{
		// DT_RPATH is inherited: libgreet's dependency is found through the
		// program's RPATH.
		{"rpath", "--disable-new-dtags", nil, elf.DT_RPATH, "lib", "lib", ""},
		// DT_RPATH comes before LD_LIBRARY_PATH.
		{"rpath-before-library-path", "--disable-new-dtags", []string{"alt"}, elf.DT_RPATH, "lib", "lib", ""},
		// DT_RUNPATH applies only to the object's own DT_NEEDED, as in ld.so.
		{"runpath-not-inherited", "--enable-new-dtags", nil, elf.DT_RUNPATH, "", "", "libinner.so"},
		// LD_LIBRARY_PATH comes before DT_RUNPATH.
		{"runpath-after-library-path", "--enable-new-dtags", []string{"alt", "lib"}, elf.DT_RUNPATH, "alt", "lib", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := tempDir(t)
			prog := privateLibs(t, dir, tt.dtags)
			assertDynTag(t, prog, tt.wantTag, "$ORIGIN/../lib")
			r := &Resolver{}
			for _, p := range tt.libPath {
				r.LibraryPath = append(r.LibraryPath, filepath.Join(dir, p))
			}
			c, err := r.Resolve(prog)
			if tt.wantMissing != "" {
				var miss *MissingLibraryError
				if !errors.As(err, &miss) {
					t.Fatalf("Resolve error = %v, want *MissingLibraryError", err)
				}
				wantBy := filepath.Join(dir, "lib", "libgreet.so")
				if miss.Name != tt.wantMissing || miss.NeededBy != wantBy {
					t.Errorf("missing %q needed by %q, want %q needed by %q", miss.Name, miss.NeededBy, tt.wantMissing, wantBy)
				}
				return
			}
			if err != nil {
				t.Fatalf("Resolve: %v", err)
			}
			checkInvariants(t, r, c)
			idx := fileIndex(t, c)
			for lib, d := range map[string]string{"libgreet.so": tt.wantGreet, "libinner.so": tt.wantInner} {
				p := filepath.Join(dir, d, lib)
				if f := idx[p]; f.Kind != KindLibrary {
					t.Errorf("%s: got %+v, want KindLibrary (libraries: %v)", p, f, pathsOf(c, KindLibrary))
				}
			}
			wantReason := "needed by " + prog + " (DT_NEEDED libgreet.so)"
			if f := idx[filepath.Join(dir, tt.wantGreet, "libgreet.so")]; f.Reason != wantReason {
				t.Errorf("reason = %q, want %q", f.Reason, wantReason)
			}
		})
	}
}

// assertDynTag checks the fixture really carries the tag the test is about.
func assertDynTag(t *testing.T, p string, tag elf.DynTag, want string) {
	t.Helper()
	f, err := elf.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, err := f.DynString(tag)
	if err != nil || len(got) != 1 || got[0] != want {
		t.Fatalf("%s: %v = %q (%v), want [%q]", p, tag, got, err, want)
	}
}

func TestSymlinkChain(t *testing.T) {
	dir := tempDir(t)
	lib := filepath.Join(dir, "lib")
	gcc(t, filepath.Join(lib, "libx.so.1.0.0"), "int x(void){return 0;}\n", "-shared", "-fPIC", "-Wl,-soname,libx.so.1")
	for _, l := range [][2]string{
		{"lib/libx.so.1", "libx.so.1.0.0"},
		{"lib/libx.so", "libx.so.1"},
		{"lib64", "lib"}, // a directory symlink on the RUNPATH
	} {
		symlink(t, dir, l[0], l[1])
	}
	prog := filepath.Join(dir, "bin", "app")
	gcc(t, prog, "int x(void);\nint main(void){return x();}\n", "-L"+lib, "-lx", "-Wl,--disable-new-dtags", "-Wl,-rpath,$ORIGIN/../lib64")
	symlink(t, dir, "bin/app-link", "app")

	r := &Resolver{}
	c, err := r.Resolve(filepath.Join(dir, "bin", "app-link"))
	if err != nil {
		t.Fatalf("Resolve: %v", err)
	}
	checkInvariants(t, r, c)
	if c.Program != prog {
		t.Errorf("Program = %s, want the link's target %s", c.Program, prog)
	}
	want := []File{
		{Path: filepath.Join(dir, "bin", "app"), Kind: KindProgram},
		{Path: filepath.Join(dir, "bin", "app-link"), Kind: KindLink, Link: "app"},
		{Path: filepath.Join(dir, "lib64"), Kind: KindLink, Link: "lib"},
		{Path: filepath.Join(lib, "libx.so.1"), Kind: KindLink, Link: "libx.so.1.0.0"},
		{Path: filepath.Join(lib, "libx.so.1.0.0"), Kind: KindLibrary},
	}
	checkEntries(t, c, want)
	if _, ok := fileIndex(t, c)[filepath.Join(lib, "libx.so")]; ok {
		t.Errorf("libx.so is in the closure before anything asked for it")
	}

	// Asking for the development name walks the whole chain (found through
	// the program's DT_RPATH, which dlopen honours too); the library itself
	// keeps its first reason.
	if err := r.AddLibrary(c, "libx.so", "plugin"); err != nil {
		t.Fatalf("AddLibrary: %v", err)
	}
	checkInvariants(t, r, c)
	want = append(want, File{Path: filepath.Join(lib, "libx.so"), Kind: KindLink, Link: "libx.so.1"})
	checkEntries(t, c, want)
	if f := fileIndex(t, c)[filepath.Join(lib, "libx.so.1.0.0")]; !strings.HasPrefix(f.Reason, "needed by ") {
		t.Errorf("libx.so.1.0.0 reason = %q, want the DT_NEEDED one kept", f.Reason)
	}
}

// checkEntries checks that each wanted (Path, Kind, Link) is in c.
func checkEntries(t *testing.T, c *Closure, want []File) {
	t.Helper()
	idx := fileIndex(t, c)
	for _, w := range want {
		got, ok := idx[w.Path]
		if !ok {
			t.Errorf("missing %s (%v); have %v", w.Path, w.Kind, slices.Collect(mapKeys(idx)))
			continue
		}
		if got.Kind != w.Kind || got.Link != w.Link {
			t.Errorf("%s: got %v %q, want %v %q", w.Path, got.Kind, got.Link, w.Kind, w.Link)
		}
	}
}

func mapKeys(m map[string]File) func(func(string) bool) {
	return func(yield func(string) bool) {
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			if !yield(k) {
				return
			}
		}
	}
}

func TestMissingLibrary(t *testing.T) {
	dir := tempDir(t)
	lib := filepath.Join(dir, "libgone.so")
	gcc(t, lib, "int gone(void){return 0;}\n", "-shared", "-fPIC")
	prog := filepath.Join(dir, "app")
	gcc(t, prog, "int gone(void);\nint main(void){return gone();}\n", "-L"+dir, "-lgone")
	if err := os.Remove(lib); err != nil {
		t.Fatal(err)
	}
	_, err := (&Resolver{}).Resolve(prog)
	var miss *MissingLibraryError
	if !errors.As(err, &miss) {
		t.Fatalf("Resolve error = %v, want *MissingLibraryError", err)
	}
	if miss.Name != "libgone.so" || miss.NeededBy != prog {
		t.Errorf("got Name %q NeededBy %q, want libgone.so and %s", miss.Name, miss.NeededBy, prog)
	}
	if !slices.Contains(miss.Searched, "/usr/lib/x86_64-linux-gnu") {
		t.Errorf("Searched = %v, want the default dirs among them", miss.Searched)
	}
	msg := err.Error()
	for _, want := range []string{"libgone.so", prog, "install the package that provides it", "`files:`"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q lacks %q", msg, want)
		}
	}
	if strings.Contains(msg, "\n") {
		t.Errorf("message spans lines: %q", msg)
	}
}

func TestNotELF(t *testing.T) {
	tests := []struct {
		name        string
		content     string
		wantShebang string
		wantMsg     string
	}{
		{"python-script", "#!/usr/bin/env python3\nprint('hi')\n", "/usr/bin/env python3",
			`is a script for "/usr/bin/env python3", not an ELF program`},
		{"sh-script-spaces", "#! /bin/sh -e\necho hi\n", "/bin/sh -e", "script runtimes (python, node) are planned"},
		{"text", "hello, world\n", "", "is not an ELF executable"},
		{"empty", "", "", "is not an ELF executable"},
		{"almost-elf", "\x7fEL", "", "is not an ELF executable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := tempDir(t)
			p := writeFile(t, dir, "app", []byte(tt.content), 0o755)
			_, err := (&Resolver{}).Resolve(p)
			var ne *NotELFError
			if !errors.As(err, &ne) {
				t.Fatalf("Resolve error = %v, want *NotELFError", err)
			}
			if ne.Path != p || ne.Shebang != tt.wantShebang {
				t.Errorf("got Path %q Shebang %q, want %q %q", ne.Path, ne.Shebang, p, tt.wantShebang)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) || !strings.Contains(err.Error(), p) {
				t.Errorf("message %q lacks %q or the path", err, tt.wantMsg)
			}
		})
	}
}

func TestProgramFileErrors(t *testing.T) {
	dir := tempDir(t)
	if err := os.Mkdir(filepath.Join(dir, "adir"), 0o755); err != nil {
		t.Fatal(err)
	}
	symlink(t, dir, "dangling", "nowhere")
	symlink(t, dir, "loop1", "loop2")
	symlink(t, dir, "loop2", "loop1")
	tests := []struct {
		name    string
		path    string
		wantIs  error
		wantMsg string
	}{
		{"missing", "/nope", fs.ErrNotExist, "/nope"},
		{"dangling", "/dangling", fs.ErrNotExist, "/dangling"},
		{"directory", "/adir", nil, "not a regular file"},
		{"loop", "/loop1", nil, "too many levels of symbolic links"},
		{"relative-with-root", "app", nil, "must be absolute"},
	}
	r := &Resolver{Root: dir}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := r.Resolve(tt.path)
			if err == nil {
				t.Fatal("Resolve succeeded, want an error")
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("error %v is not %v", err, tt.wantIs)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("message %q lacks %q", err, tt.wantMsg)
			}
		})
	}
}

func TestUnreadableProgram(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("running as root: file permissions are not enforced")
	}
	dir := tempDir(t)
	p := writeFile(t, dir, "app", fakeELF{}.bytes(), 0o000)
	_, err := (&Resolver{}).Resolve(p)
	if !errors.Is(err, fs.ErrPermission) || !strings.Contains(err.Error(), p) {
		t.Errorf("Resolve error = %v, want a permission error naming %s", err, p)
	}
}

func TestArch(t *testing.T) {
	dir := tempDir(t)
	arm := func(t *testing.T) string {
		goTool := needTool(t, "go")
		src := writeFile(t, dir, "armsrc/main.go", []byte("package main\n\nfunc main() {}\n"), 0o644)
		out := filepath.Join(dir, "arm-prog")
		run(t, filepath.Dir(src), []string{"GOOS=linux", "GOARCH=arm64", "CGO_ENABLED=0", "GOFLAGS="},
			goTool, "build", "-o", out, src)
		return out
	}
	obj := func(t *testing.T) string {
		out := filepath.Join(dir, "obj.o")
		gcc(t, out, helloC, "-c")
		return out
	}
	synthetic := func(s fakeELF) func(t *testing.T) string {
		return func(t *testing.T) string {
			return writeFile(t, t.TempDir(), "prog", s.bytes(), 0o755)
		}
	}
	tests := []struct {
		name      string
		build     func(t *testing.T) string
		wantGot   elf.Machine
		wantClass elf.Class
		wantType  elf.Type
		wantMsg   string
	}{
		{"aarch64-go", arm, elf.EM_AARCH64, elf.ELFCLASS64, elf.ET_EXEC, "aarch64"},
		{"i386", synthetic(fakeELF{class: elf.ELFCLASS32, machine: elf.EM_386, typ: elf.ET_EXEC}), elf.EM_386, elf.ELFCLASS32, elf.ET_EXEC, "32-bit"},
		{"relocatable", obj, elf.EM_X86_64, elf.ELFCLASS64, elf.ET_REL, "relocatable object"},
		{"core", synthetic(fakeELF{typ: elf.ET_CORE, noDyn: true}), elf.EM_X86_64, elf.ELFCLASS64, elf.ET_CORE, "core dump"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := tt.build(t)
			_, err := (&Resolver{}).Resolve(p)
			var ae *ArchError
			if !errors.As(err, &ae) {
				t.Fatalf("Resolve error = %v, want *ArchError", err)
			}
			if ae.Path != p || ae.Got != tt.wantGot || ae.Want != elf.EM_X86_64 || ae.Class != tt.wantClass || ae.Type != tt.wantType {
				t.Errorf("got %+v, want Path %s Got %v Want EM_X86_64 Class %v Type %v", ae, p, tt.wantGot, tt.wantClass, tt.wantType)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("message %q lacks %q", err, tt.wantMsg)
			}
		})
	}
}

// TestWrongArchCandidateSkipped checks ld.so's rule: a candidate of another
// machine is passed over and the search goes on.
func TestWrongArchCandidateSkipped(t *testing.T) {
	tests := []struct {
		name     string
		good     bool // also put a good candidate in the second dir
		wantPath string
	}{
		{"found-after-skip", true, "/b/libw.so"},
		{"only-wrong-arch", false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := tempDir(t)
			writeFile(t, root, "a/libw.so", fakeELF{machine: elf.EM_AARCH64}.bytes(), 0o644)
			if tt.good {
				writeFile(t, root, "b/libw.so", fakeELF{}.bytes(), 0o644)
			}
			writeFile(t, root, "prog", fakeELF{needed: []string{"libw.so"}, runpath: "/a:/b"}.bytes(), 0o755)
			r := &Resolver{Root: root}
			c, err := r.Resolve("/prog")
			if tt.wantPath == "" {
				var miss *MissingLibraryError
				if !errors.As(err, &miss) {
					t.Fatalf("Resolve error = %v, want *MissingLibraryError", err)
				}
				if len(miss.Skipped) != 1 || !strings.Contains(miss.Skipped[0], "EM_AARCH64") {
					t.Errorf("Skipped = %q, want /a/libw.so as EM_AARCH64", miss.Skipped)
				}
				return
			}
			if err != nil {
				t.Fatalf("Resolve: %v", err)
			}
			if got := pathsOf(c, KindLibrary); !slices.Equal(got, []string{tt.wantPath}) {
				t.Errorf("libraries = %v, want [%s]", got, tt.wantPath)
			}
		})
	}
}

// TestRedisMatchesLdd compares the closure of a real Debian program with the
// loader's own answer (ldd is used here only, as an oracle).
func TestRedisMatchesLdd(t *testing.T) {
	const prog = "/usr/bin/redis-server"
	if _, err := os.Stat(prog); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is required in CI (install redis-server): %v", prog, err)
		}
		t.Skipf("%s not installed (apt-get install redis-server to run this test): %v", prog, err)
	}
	ldd := needTool(t, "ldd")
	out, err := exec.Command(ldd, prog).Output()
	if err != nil {
		t.Fatalf("ldd %s: %v", prog, err)
	}
	want := map[string]bool{}
	for _, line := range strings.Split(string(out), "\n") {
		fields := strings.Fields(line)
		if len(fields) == 0 || strings.HasPrefix(fields[0], "linux-vdso") {
			continue
		}
		p := fields[0]
		if len(fields) >= 3 && fields[1] == "=>" {
			p = fields[2]
		}
		if !strings.HasPrefix(p, "/") {
			t.Fatalf("ldd line %q: no path (not found?)", line)
		}
		real, err := filepath.EvalSymlinks(p)
		if err != nil {
			t.Fatal(err)
		}
		want[real] = true
	}

	r := &Resolver{}
	c, err := r.Resolve(prog)
	if err != nil {
		t.Fatalf("Resolve: %v", err)
	}
	checkInvariants(t, r, c)
	got := map[string]bool{}
	for _, f := range c.Files {
		if f.Kind == KindLibrary || f.Kind == KindInterp {
			got[f.Path] = true
		}
	}
	for p := range want {
		if !got[p] {
			t.Errorf("ldd has %s, closure does not", p)
		}
	}
	for p := range got {
		if !want[p] {
			t.Errorf("closure has %s, ldd does not", p)
		}
	}
	if !c.Threads || c.Libc != "glibc" || c.Static {
		t.Errorf("Threads, Libc, Static = %v, %q, %v; want true, glibc, false", c.Threads, c.Libc, c.Static)
	}
}

func TestAddLibrary(t *testing.T) {
	dir := tempDir(t)
	prog := filepath.Join(dir, "hello")
	gcc(t, prog, helloC)
	r := &Resolver{}
	c, err := r.Resolve(prog)
	if err != nil {
		t.Fatalf("Resolve: %v", err)
	}
	tests := []struct {
		name    string
		closure func() *Closure
		soname  string
		wantErr error
	}{
		{"nss-dns", func() *Closure { return c }, "libnss_dns.so.2", nil},
		{"libgcc_s", func() *Closure { return c }, "libgcc_s.so.1", nil},
		// A closure without loader state (e.g. decoded from JSON) still works.
		{"rebuilt-closure", func() *Closure { return &Closure{Program: c.Program, Files: slices.Clone(c.Files)} }, "libnss_files.so.2", nil},
		{"unknown", func() *Closure { return c }, "libdoesnotexist-hull.so.9", ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cl := tt.closure()
			before := len(cl.Files)
			err := r.AddLibrary(cl, tt.soname, "dlopened by glibc")
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.soname) {
					t.Fatalf("AddLibrary error = %v, want %v naming %s", err, tt.wantErr, tt.soname)
				}
				if len(cl.Files) != before {
					t.Errorf("failed AddLibrary changed Files: %d -> %d", before, len(cl.Files))
				}
				return
			}
			if err != nil {
				t.Fatalf("AddLibrary: %v", err)
			}
			checkInvariants(t, r, cl)
			var host string
			for _, d := range []string{"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu"} {
				if h, err := filepath.EvalSymlinks(filepath.Join(d, tt.soname)); err == nil {
					host = h
					break
				}
			}
			if host == "" {
				t.Skipf("%s not on this host", tt.soname)
			}
			f := fileIndex(t, cl)[host]
			if f.Kind != KindLibrary || f.Reason != "dlopened by glibc" {
				t.Errorf("%s: got %+v, want KindLibrary with the given reason", host, f)
			}
		})
	}
}
