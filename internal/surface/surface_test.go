package surface_test

import (
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/hullvm/hull/internal/surface"
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

func run(t *testing.T, dir string, env []string, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// place writes a file of content and mode at rel under root.
func place(t *testing.T, root, rel, content string, mode fs.FileMode) {
	t.Helper()
	p := filepath.Join(root, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
}

// build compiles test programs in a scratch dir and moves the results
// into root, so no sources or objects land in the scanned tree.
func buildPrograms(t *testing.T, root string) {
	t.Helper()
	gcc := needTool(t, "gcc")
	gotool := needTool(t, "go")
	work := t.TempDir()
	place(t, work, "prog.c", "#include <stdio.h>\nint main(void){puts(\"hi\");return 0;}\n", 0o644)
	place(t, work, "lib.c", "int x(void){return 42;}\n", 0o644)
	place(t, work, "main.go", "package main\n\nfunc main() {}\n", 0o644)
	run(t, work, nil, gcc, "-pie", "-fPIE", "-o", filepath.Join(root, "app/prog"), "prog.c")
	run(t, work, nil, gcc, "-shared", "-fPIC", "-o", filepath.Join(root, "app/libx.so"), "lib.c")
	run(t, work, []string{"CGO_ENABLED=0", "GOFLAGS=-buildvcs=false"}, gotool, "build", "-o", filepath.Join(root, "app/static-go"), "main.go")
}

func TestScanDirClassify(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "app"), 0o755); err != nil {
		t.Fatal(err)
	}
	buildPrograms(t, root)
	place(t, root, "bin/bash", "#!fake shell\n", 0o755)
	if err := os.Symlink("bash", filepath.Join(root, "bin/sh")); err != nil {
		t.Fatal(err)
	}
	place(t, root, "usr/bin/python3.11", "fake", 0o755)
	place(t, root, "usr/bin/dpkg", "fake", 0o755)
	place(t, root, "usr/bin/gcc-12", "fake", 0o755)
	place(t, root, "usr/bin/curl", "fake", 0o755)
	place(t, root, "usr/bin/su", "fake setuid", 0o4755|fs.ModeSetuid)
	place(t, root, "usr/bin/wall", "fake setgid", 0o755|fs.ModeSetgid)
	place(t, root, "data/sh", "just data named sh", 0o644)                          // not executable: not a shell
	place(t, root, "data/tiny-elf", "\x7fELF tiny", 0o755)                          // too short to be an ELF
	place(t, root, "data/broken-elf", "\x7fELF"+strings.Repeat("\xff", 200), 0o644) // malformed headers

	files, err := surface.ScanDir(root)
	if err != nil {
		t.Fatalf("ScanDir: %v", err)
	}
	var wantBytes int64
	for _, f := range files {
		if f.Path == "/" && !f.Mode.IsDir() {
			t.Errorf("root entry %+v, want a directory", f)
		}
		if f.Mode.IsRegular() {
			st, err := os.Stat(filepath.Join(root, f.Path))
			if err != nil {
				t.Fatal(err)
			}
			wantBytes += st.Size()
		}
	}
	got := surface.Classify(files)
	want := surface.Report{
		Files: 13, Dirs: 6, Symlinks: 1, Bytes: wantBytes,
		Programs:        []string{"/app/prog", "/app/static-go"},
		SharedLibraries: 1,
		Setuid:          []string{"/usr/bin/su", "/usr/bin/wall"},
		Shells:          []string{"/bin/bash", "/bin/sh"},
		Interpreters:    []string{"/usr/bin/python3.11"},
		PackageManagers: []string{"/usr/bin/dpkg"},
		Compilers:       []string{"/usr/bin/gcc-12"},
		Downloaders:     []string{"/usr/bin/curl"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Classify(ScanDir) =\n%+v\nwant\n%+v", got, want)
	}
}

func TestClassifySynthetic(t *testing.T) {
	open := func(s string) func() (io.ReadCloser, error) {
		return func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(s)), nil }
	}
	files := []surface.File{
		{Path: "/", Mode: fs.ModeDir | 0o755},
		{Path: "/dev/null", Mode: fs.ModeDevice | fs.ModeCharDevice | 0o666},
		{Path: "/dev/sda", Mode: fs.ModeDevice | 0o660},
		{Path: "/run/sock", Mode: fs.ModeSocket | 0o777},
		{Path: "/run/fifo", Mode: fs.ModeNamedPipe | 0o644},
		{Path: "/bin/busybox", Mode: 0o755, Size: 3, Open: open("abc")},
		{Path: "/usr/bin/wget", Mode: fs.ModeSymlink | 0o777},
		{Path: "/usr/share/doc/perl", Mode: 0o644, Size: 4, Open: open("text")},
	}
	got := surface.Classify(files)
	want := surface.Report{
		Files: 2, Dirs: 1, Symlinks: 1, Bytes: 7,
		Shells:      []string{"/bin/busybox"},
		Downloaders: []string{"/usr/bin/wget"},
		Devices:     []string{"/dev/null", "/dev/sda"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Classify =\n%+v\nwant\n%+v", got, want)
	}
}

func TestToolClass(t *testing.T) {
	tests := []struct{ name, want string }{
		{"python3", "interpreter"},
		{"python3.11", "interpreter"},
		{"perl5.36.0", "interpreter"},
		{"node", "interpreter"},
		{"lua5.4", "interpreter"},
		{"sh", "shell"},
		{"bash", "shell"},
		{"ash", "shell"},
		{"busybox", "shell"},
		{"shasum", ""},
		{"sha256sum", ""},
		{"shellcheck", ""},
		{"gcc-12", "compiler"},
		{"gcc", "compiler"},
		{"go", "compiler"},
		{"gold", ""},
		{"ld.gold", "compiler"},
		{"curl", "downloader"},
		{"ssh", "downloader"},
		{"ssh-keygen", ""},
		{"dpkg", "package"},
		{"pip3", "package"},
		{"server", ""},
		{"libc.so.6", ""},
		{"", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := surface.ToolClass(tt.name); got != tt.want {
				t.Errorf("ToolClass(%q) = %q, want %q", tt.name, got, tt.want)
			}
		})
	}
}
