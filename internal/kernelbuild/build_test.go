package kernelbuild

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/hullvm/hull/internal/kernel"
)

// fakeSystem answers version queries and records what the build asked
// for beyond them.
type fakeSystem struct {
	installed string
	asked     []string
}

var errStop = errors.New("stop: the test only checks the cache")

func (f *fakeSystem) sourceVersion(context.Context, string) (string, string, error) {
	return f.installed, "", nil
}

func (f *fakeSystem) missing(_ context.Context, pkgs []string) ([]string, error) {
	f.asked = append(f.asked, "missing")
	return nil, errStop
}

func (f *fakeSystem) install(context.Context, []string, func(Event)) error {
	f.asked = append(f.asked, "install")
	return errStop
}

func TestBuildCache(t *testing.T) {
	store := &kernel.Store{Dir: filepath.Join(t.TempDir(), "kernels")}
	frag := []byte("CONFIG_A=y\n")
	patches := []Patch{{Name: "0001-x.patch", Data: []byte("x")}}
	stored, err := store.AddBuilt(context.Background(), kernel.Built{
		Name: "tuned", Release: "6.1.192-hull", Kernel: vmlinux(t, "plain"),
		BuildKey: Key("6.1.192-3", frag, patches), Boot: kernel.Boot{NoACPI: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	// A custom build of the same name came later and took the name; a
	// damaged bundle sits in the store too. Neither may stop the cache.
	custom, err := store.AddBuilt(context.Background(), kernel.Built{
		Name: "tuned", Release: "6.1.192-hull", Kernel: vmlinux(t, "custom"),
		BuildKey: Key("6.1.192-3", []byte("CONFIG_CUSTOM=y\n"), patches),
	})
	if err != nil {
		t.Fatal(err)
	}
	damaged, err := store.AddBuilt(context.Background(), kernel.Built{
		Name: "damaged", Release: "6.1.192-hull", Kernel: vmlinux(t, "damaged"), BuildKey: "x",
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(damaged.Dir, "bundle.json"), []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := store.Get("tuned"); err != nil || got.Digest != custom.Digest {
		t.Fatalf("Get(tuned) = %v, %v before the cached build; want the custom %s", got, err, custom.Digest)
	}
	tests := []struct {
		name    string
		version string
		frag    []byte
		force   bool
		bundle  string
		cached  bool
	}{
		{"same inputs: instant", "6.1.192-3", frag, false, "tuned", true},
		{"another source version", "6.1.193-1", frag, false, "tuned", false},
		{"another fragment", "6.1.192-3", []byte("CONFIG_A=n\n"), false, "tuned", false},
		{"another bundle name", "6.1.192-3", frag, false, "tuned2", false},
		{"forced", "6.1.192-3", frag, true, "tuned", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sys := &fakeSystem{installed: tt.version}
			b := &builder{sys: sys, o: Options{Store: store, Name: tt.bundle, Fragment: tt.frag, Patches: patches, WorkDir: t.TempDir(), Force: tt.force}}
			start := time.Now()
			res, err := b.build(context.Background(), start)
			if tt.cached {
				if err != nil || !res.Cached || res.Bundle.Digest != stored.Digest || len(sys.asked) != 0 {
					t.Fatalf("build() = %+v, %v (asked %v); want the stored bundle, nothing else asked", res, err, sys.asked)
				}
				// The plain build's name means it again.
				if got, err := store.Get("tuned"); err != nil || got.Digest != stored.Digest {
					t.Errorf("Get(tuned) = %v, %v after a cached build; want %s", got, err, stored.Digest)
				}
				return
			}
			if !errors.Is(err, errStop) {
				t.Fatalf("build() err = %v, want it to go on to building (errStop)", err)
			}
		})
	}
}

// A failed step names itself, keeps the last lines it printed (where the
// compiler's error is) and its full log.
func TestFailedStepKeepsItsLastLines(t *testing.T) {
	log := filepath.Join(t.TempDir(), "build.log")
	b := &builder{}
	script := "for i in $(seq 1 40); do echo line $i; done; echo 'fs/x.c:1: error: boom' >&2; exit 2"
	err := b.exec(context.Background(), "compiling", t.TempDir(), nil, nil, log, "sh", "-c", script)
	var be *BuildError
	if !errors.As(err, &be) {
		t.Fatalf("exec() = %v, want a *BuildError", err)
	}
	if be.Step != "compiling" || be.Log != log || len(be.Tail) != tailLines {
		t.Fatalf("BuildError = step %q, log %q, %d tail lines; want compiling, %s, %d", be.Step, be.Log, len(be.Tail), log, tailLines)
	}
	if last := be.Tail[len(be.Tail)-1]; last != "fs/x.c:1: error: boom" {
		t.Errorf("last line = %q, want the error", last)
	}
	if be.Tail[0] != "line 17" {
		t.Errorf("first kept line = %q, want line 17 (the last %d of 41)", be.Tail[0], tailLines)
	}
	data, err := os.ReadFile(log)
	if err != nil || !strings.Contains(string(data), "line 1\n") || !strings.Contains(string(data), "error: boom") {
		t.Errorf("full log lacks the output: %v\n%s", err, data)
	}
	if !strings.Contains(be.Error(), "compiling") || !strings.Contains(be.Error(), log) {
		t.Errorf("Error() = %q, want the step and the log path", be.Error())
	}
}

// vmlinux writes an x86-64 ELF executable the store takes for a kernel:
// this test binary with tag appended, so each tag gives another digest.
func vmlinux(t *testing.T, tag string) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "vmlinux")
	if err := os.WriteFile(p, append(data, tag...), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// Options that would only fail after the compile fail before anything.
func TestOptionsCheck(t *testing.T) {
	store := &kernel.Store{Dir: t.TempDir()}
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		o       Options
		err     string
		workDir string
		jobs    int
	}{
		{"defaults", Options{Store: store, WorkDir: "/w"}, "", "/w", runtime.NumCPU()},
		{"relative work dir", Options{Store: store, WorkDir: "build", Jobs: 3}, "", filepath.Join(wd, "build"), 3},
		{"bad name", Options{Store: store, WorkDir: "/w", Name: "my kernel"}, `kernel name "my kernel"`, "", 0},
		{"digest-like name", Options{Store: store, WorkDir: "/w", Name: "abc123"}, "looks like a digest", "", 0},
		{"negative jobs", Options{Store: store, WorkDir: "/w", Jobs: -2}, "-2 parallel jobs", "", 0},
		{"no work dir", Options{Store: store}, "no store or work directory", "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := tt.o.check()
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("check() = %v, want an error containing %q", err, tt.err)
				}
				return
			}
			if err != nil || o.WorkDir != tt.workDir || o.Jobs != tt.jobs || o.Name != DefaultName {
				t.Errorf("check() = work dir %q, %d jobs, name %q, %v; want %q, %d, %q", o.WorkDir, o.Jobs, o.Name, err, tt.workDir, tt.jobs, DefaultName)
			}
		})
	}
	// Build itself refuses the bad name before asking apt anything.
	if _, err := Build(context.Background(), Options{Store: store, WorkDir: "/w", Name: "a/b"}); err == nil || !strings.Contains(err.Error(), `"a/b"`) {
		t.Errorf("Build(bad name) = %v, want the name refused", err)
	}
}

func TestLoadPatches(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{"0002-b.patch": "b", "0001-a.patch": "a", "README": "not a patch"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := LoadPatches(dir)
	if err != nil || len(got) != 2 || got[0].Name != "0001-a.patch" || string(got[1].Data) != "b" {
		t.Fatalf("LoadPatches() = %+v, %v; want 0001-a.patch then 0002-b.patch", got, err)
	}
	empty := t.TempDir()
	missing := filepath.Join(empty, "nope")
	file := filepath.Join(dir, "README")
	for _, tt := range []struct{ dir, want string }{
		{empty, empty + " holds no *.patch files"},
		{missing, missing + ": no such file"},
		{file, file + " is not a directory"},
	} {
		if _, err := LoadPatches(tt.dir); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("LoadPatches(%s) = %v, want an error containing %q", tt.dir, err, tt.want)
		}
	}
}
