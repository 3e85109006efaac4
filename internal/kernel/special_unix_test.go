//go:build unix

package kernel

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// returns runs f and fails the test if it does not return: the bugs
// these tests guard against are reads that never end, and a hang guard
// turns such a regression into a failure instead of a stuck test run.
func returns[T any](t *testing.T, f func() T) T {
	t.Helper()
	done := make(chan T, 1)
	go func() { done <- f() }()
	select {
	case v := <-done:
		return v
	case <-time.After(10 * time.Second):
		t.Fatal("call did not return: it is reading a file that never ends")
	}
	var zero T
	return zero // not reached: t.Fatal ends the test
}

// A file of a bundle replaced by a FIFO or a symlink to a device must
// fail Verify (and what reads the store), not hang it.
func TestSpecialFilesDoNotHang(t *testing.T) {
	fifo := func(t *testing.T, p string) {
		must(t, os.Remove(p))
		must(t, syscall.Mkfifo(p, 0o644))
	}
	zero := func(t *testing.T, p string) {
		must(t, os.Remove(p))
		must(t, os.Symlink("/dev/zero", p))
	}
	tests := []struct {
		name    string
		file    string // in the bundle
		replace func(t *testing.T, p string)
		want    string
	}{
		{"kernel is a FIFO", "vmlinux.zst", fifo, "vmlinux.zst is a named pipe, not a regular file"},
		{"kernel is a symlink to /dev/zero", "vmlinux.zst", zero, "vmlinux.zst is a symlink, not a regular file"},
		{"config is a FIFO", "config", fifo, "config is a named pipe, not a regular file"},
		{"config is a symlink to /dev/zero", "config", zero, "config is a symlink, not a regular file"},
		{"bundle.json is a FIFO", "bundle.json", fifo, "bundle.json is a named pipe, not a regular file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t)
			b, err := s.AddBuilt(context.Background(), Built{Name: "tuned", Release: "6.1.99-hull",
				Kernel: writeTemp(t, "vmlinux", fakeVmlinux("k")), Config: writeTemp(t, ".config", []byte(testConfig)), BuildKey: "k1"})
			must(t, err)
			tt.replace(t, filepath.Join(b.Dir, tt.file))
			err = returns(t, b.Verify)
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Verify() = %v; want ErrCorrupt containing %q", err, tt.want)
			}
			if tt.file == "bundle.json" {
				// Loading the store must not hang on it either.
				err := returns(t, func() error { _, err := s.Get(""); return err })
				if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "named pipe") {
					t.Errorf("Get(default) = %v; want ErrCorrupt naming the FIFO", err)
				}
			}
		})
	}
	t.Run("size differs", func(t *testing.T) {
		// A regular file of the wrong size is refused before it is read.
		s := newStore(t)
		b, err := s.AddBuilt(context.Background(), Built{Name: "tuned", Release: "6.1.99-hull", Kernel: writeTemp(t, "bzImage", fakeBzImage("k"))})
		must(t, err)
		must(t, os.Truncate(b.KernelPath(), 1<<40)) // sparse: reading it would take ages
		err = returns(t, b.Verify)
		if want := "vmlinuz has 1099511627776 bytes, want 65536"; err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Verify() = %v; want one containing %q", err, want)
		}
	})
	t.Run("default and tag are FIFOs", func(t *testing.T) {
		s := newStore(t)
		_, err := s.Add(context.Background(), "tuned", "6.1.99-hull", writeTemp(t, "bzImage", fakeBzImage("k")), "")
		must(t, err)
		fifo(t, filepath.Join(s.Dir, "default"))
		fifo(t, filepath.Join(s.Dir, "tags", "tuned"))
		if err := returns(t, func() error { _, err := s.Default(); return err }); err == nil || !strings.Contains(err.Error(), "named pipe") {
			t.Errorf("Default() = %v; want an error naming the FIFO", err)
		}
		if err := returns(t, func() error { _, err := s.Tag("tuned"); return err }); err == nil || !strings.Contains(err.Error(), "named pipe") {
			t.Errorf("Tag() = %v; want an error naming the FIFO", err)
		}
	})
}
