package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

type inspectJSON struct {
	Name     string `json:"name"`
	Digest   string `json:"digest"`
	Manifest struct {
		Program string `json:"program"`
		Files   []struct {
			Path      string `json:"path"`
			Type      string `json:"type"`
			Mode      uint32 `json:"mode"`
			Reason    string `json:"reason"`
			Overrides string `json:"overrides"`
		} `json:"files"`
	} `json:"manifest"`
	Summary struct {
		Files           int      `json:"files"`
		Programs        []string `json:"programs"`
		Setuid          []string `json:"setuid"`
		Shells          []string `json:"shells"`
		Interpreters    []string `json:"interpreters"`
		PackageManagers []string `json:"package_managers"`
		Compilers       []string `json:"compilers"`
		Downloaders     []string `json:"downloaders"`
		Devices         []string `json:"devices"`
		HullBytes       int64    `json:"hull_bytes"`
	} `json:"summary"`
}

func inspect(t *testing.T, name string) inspectJSON {
	t.Helper()
	r := hull(t, "inspect", name, "--json")
	if r.code != 0 {
		t.Fatalf("inspect %s: %s", name, r.stderr)
	}
	var got inspectJSON
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
		t.Fatalf("inspect --json: %v", err)
	}
	return got
}

// The image of a Go HTTP server holds one program (plus its loader and
// libraries), nothing that looks like a shell, interpreter, package
// manager, compiler or download tool, no setuid bits and no devices.
func TestImageHoldsNothingElse(t *testing.T) {
	requireVM(t)
	for _, tc := range []struct {
		name string
		cgo  bool
	}{{"static", false}, {"dynamic", true}} {
		t.Run(tc.name, func(t *testing.T) {
			bin := goBuild(t, "./examples/hello-server", tc.cgo)
			name := uniqueName(t)
			if r := hull(t, "build", bin, "--name", name); r.code != 0 {
				t.Fatalf("build: %s", r.stderr)
			}
			got := inspect(t, name)
			s := got.Summary
			if len(s.Programs) != 1 || s.Programs[0] != got.Manifest.Program {
				t.Errorf("programs = %v, want exactly the app %s", s.Programs, got.Manifest.Program)
			}
			for class, l := range map[string][]string{"shells": s.Shells, "interpreters": s.Interpreters,
				"package managers": s.PackageManagers, "compilers": s.Compilers, "download tools": s.Downloaders,
				"setuid/setgid": s.Setuid, "devices": s.Devices} {
				if len(l) != 0 {
					t.Errorf("%s in the image: %v", class, l)
				}
			}
			for _, f := range got.Manifest.Files {
				if f.Reason == "" {
					t.Errorf("%s has no reason", f.Path)
				}
				if f.Mode&0o7000 != 0 {
					t.Errorf("%s has mode %o", f.Path, f.Mode)
				}
			}
			if s.HullBytes > 4<<20 {
				t.Errorf("hull adds %d bytes (init, modules, /etc), want at most 4 MiB", s.HullBytes)
			}
			out := hull(t, "inspect", name).stdout
			if !strings.Contains(out, "summary (the app's view)") || !strings.Contains(out, "0 shells") {
				t.Errorf("inspect's summary line is missing or wrong:\n%s", out)
			}
		})
	}
}

// Two builds of the same inputs give the same digest, even from
// different directories.
func TestBuildIsReproducible(t *testing.T) {
	requireVM(t)
	bin := goBuild(t, "./examples/hello-server", true)
	other := filepath.Join(t.TempDir(), "elsewhere", "hello-server")
	os.MkdirAll(filepath.Dir(other), 0o755)
	data, _ := os.ReadFile(bin)
	os.WriteFile(other, data, 0o755)
	a := inspect(t, buildOK(t, bin, "repro"))
	b := inspect(t, buildOK(t, other, "repro"))
	if a.Digest != b.Digest {
		t.Errorf("digests differ: %s vs %s", a.Digest, b.Digest)
	}
}

func buildOK(t *testing.T, program, name string, extra ...string) string {
	t.Helper()
	r := hull(t, append([]string{"build", program, "--name", name}, extra...)...)
	if r.code != 0 {
		t.Fatalf("build %s: %s", program, r.stderr)
	}
	return name
}

// The user's own /etc/hosts replaces the generated one, and inspect says
// so (C12).
func TestUserFileOverridesGenerated(t *testing.T) {
	requireVM(t)
	bin := goBuild(t, "./examples/hello-server", false)
	hosts := filepath.Join(t.TempDir(), "hosts")
	os.WriteFile(hosts, []byte("127.0.0.1 localhost mine\n"), 0o600)
	name := buildOK(t, bin, uniqueName(t), "--add", hosts+":/etc/hosts")
	got := inspect(t, name)
	for _, f := range got.Manifest.Files {
		if f.Path == "/etc/hosts" {
			if !strings.HasPrefix(f.Reason, "declared") || !strings.Contains(f.Overrides, "generated") {
				t.Errorf("/etc/hosts: reason %q, overrides %q; want the user's file, overriding the generated one", f.Reason, f.Overrides)
			}
			if f.Mode&0o444 != 0o444 {
				t.Errorf("/etc/hosts mode %o: the app user must be able to read it", f.Mode)
			}
			return
		}
	}
	t.Error("/etc/hosts missing from the image")
}

// Bad input gets one clear line naming the culprit, a non-zero exit, no
// panic trace and nothing stored.
func TestBadInputs(t *testing.T) {
	requireVM(t)
	dir := t.TempDir()
	script := filepath.Join(dir, "app.py")
	os.WriteFile(script, []byte("#!/usr/bin/env python3\nprint('hi')\n"), 0o755)
	text := filepath.Join(dir, "notes.txt")
	os.WriteFile(text, []byte("hello"), 0o644)
	missing := missingLibProgram(t)
	cases := []struct {
		name string
		args []string
		want []string
	}{
		{"script (C13)", []string{"build", script}, []string{"app.py", "script", "python3"}},
		{"script run", []string{"run", script}, []string{"app.py", "script"}},
		{"non-ELF", []string{"build", text}, []string{"notes.txt", "not an ELF"}},
		{"missing program", []string{"build", filepath.Join(dir, "nope")}, []string{"nope"}},
		{"missing library (C1)", []string{"build", missing}, []string{"libhullgone.so", filepath.Base(missing)}},
		{"unknown image", []string{"run", "no-such-image"}, []string{"no-such-image", "hull images"}},
		{"bad port", []string{"run", "no-such-image", "-p", "80:x"}, []string{"80:x"}},
		{"bad port range", []string{"run", "x", "-p", "99999:80"}, []string{"99999"}},
		{"bad env", []string{"run", "x", "-e", "1BAD=v"}, []string{"1BAD"}},
		{"bad memory", []string{"run", "x", "--memory", "12Q"}, []string{"12Q"}},
		{"unknown spec key", []string{"build", "-f", specFile(t, "program: /bin/true\nbogus: 1\n")}, []string{"bogus"}},
		{"relative guest path", []string{"build", "-f", specFile(t, "program: /bin/true\nfiles: [{host: /etc/hosts, guest: etc/hosts}]\n")}, []string{"etc/hosts", "absolute"}},
		{"inspect unknown", []string{"inspect", "nope-image"}, []string{"nope-image"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := listBlobs(t)
			r := hull(t, c.args...)
			if r.code == 0 {
				t.Fatalf("exit 0, want failure; stdout %q", r.stdout)
			}
			msg := strings.TrimSpace(r.stderr)
			if strings.Count(msg, "\n") != 0 {
				t.Errorf("error is %d lines, want one:\n%s", strings.Count(msg, "\n")+1, msg)
			}
			if strings.Contains(msg, "goroutine") || strings.Contains(msg, "panic") {
				t.Errorf("panic trace:\n%s", msg)
			}
			for _, w := range c.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not mention %q", msg, w)
				}
			}
			if after := listBlobs(t); after != before {
				t.Errorf("a failed command changed the image store: %q -> %q", before, after)
			}
		})
	}
}

func specFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "hull.yaml")
	os.WriteFile(p, []byte(content), 0o644)
	return p
}

func listBlobs(t *testing.T) string {
	t.Helper()
	ents, _ := os.ReadDir(filepath.Join(testHome, "images", "blobs"))
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return strings.Join(names, ",")
}

// missingLibProgram builds a program against a private library and then
// deletes the library.
func missingLibProgram(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("gcc"); err != nil {
		skipOrFail(t, "gcc is not installed")
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "lib.c"), []byte("int gone(void) { return 1; }\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "main.c"), []byte("int gone(void);\nint main(void) { return gone(); }\n"), 0o644)
	run := func(args ...string) {
		if b, err := exec.Command("gcc", args...).CombinedOutput(); err != nil {
			t.Fatalf("gcc %v: %v\n%s", args, err, b)
		}
	}
	run("-shared", "-fPIC", "-o", filepath.Join(dir, "libhullgone.so"), filepath.Join(dir, "lib.c"))
	prog := filepath.Join(dir, "needs-gone")
	run("-o", prog, filepath.Join(dir, "main.c"), "-L"+dir, "-lhullgone")
	os.Remove(filepath.Join(dir, "libhullgone.so"))
	return prog
}
