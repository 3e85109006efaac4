package kernelbuild

import (
	"context"
	"errors"
	"os"
	"path/filepath"
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
	img := filepath.Join(t.TempDir(), "vmlinux")
	if err := os.WriteFile(img, []byte("\x7fELF not really"), 0o644); err != nil {
		t.Fatal(err)
	}
	stored, err := store.AddBuilt(context.Background(), kernel.Built{
		Name: "tuned", Release: "6.1.192-hull", Kernel: img,
		BuildKey: Key("6.1.192-3", frag, patches), Boot: kernel.Boot{NoACPI: true},
	})
	if err != nil {
		t.Fatal(err)
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
