package kernel

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// One damaged bundle leaves the others listed; Scan reports it apart, with
// advice that fits how the bundle was made.
func TestScanKeepsHealthyBundles(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	imported, err := s.ImportDeb(ctx, defaultSpec().write(t), []string{})
	must(t, err)
	built, err := s.AddBuilt(ctx, Built{Name: "tuned", Release: "6.1.99-hull", Kernel: writeTemp(t, "vmlinux", fakeVmlinux("k")), BuildKey: "key1"})
	must(t, err)
	healthy, err := s.AddBuilt(ctx, Built{Name: "other", Release: "6.1.99-hull", Kernel: writeTemp(t, "vmlinux", fakeVmlinux("other"))})
	must(t, err)
	flipByte(t, filepath.Join(imported.Dir, "bundle.json"))
	flipByte(t, filepath.Join(built.Dir, "bundle.json"))

	ok, broken, err := s.Scan()
	must(t, err)
	if len(ok) != 1 || ok[0].Digest != healthy.Digest {
		t.Errorf("Scan() healthy = %v, want only %s", ok, healthy.Digest)
	}
	var got []string
	for _, b := range broken {
		got = append(got, b.Digest)
		if b.Dir != filepath.Join(s.Dir, b.Digest) || !errors.Is(b.Err, ErrCorrupt) {
			t.Errorf("broken %+v: want its dir and an ErrCorrupt", b)
		}
	}
	if want := sorted(imported.Digest, built.Digest); !slices.Equal(got, want) {
		t.Errorf("Scan() broken = %v, want %v", got, want)
	}
	for _, b := range broken {
		msg := b.Err.Error()
		if b.Digest == built.Digest {
			if !strings.Contains(msg, "hull kernel build --force") || strings.Contains(msg, "re-import") {
				t.Errorf("advice for a built bundle = %q; want hull kernel build --force, not re-import", msg)
			}
		} else if !strings.Contains(msg, "re-import") {
			t.Errorf("advice for an imported bundle = %q; want re-import", msg)
		}
	}
	// List stays strict: it is for callers that need every bundle sound.
	if _, err := s.List(); !errors.Is(err, ErrCorrupt) {
		t.Errorf("List() = %v, want ErrCorrupt", err)
	}
}

// A built bundle whose files are damaged (not its bundle.json) says how to
// rebuild it, not to re-import it.
func TestVerifyAdviceForBuiltBundle(t *testing.T) {
	s := newStore(t)
	b, err := s.AddBuilt(context.Background(), Built{Name: "tuned", Release: "6.1.99-hull", Kernel: writeTemp(t, "vmlinux", fakeVmlinux("k")), BuildKey: "key1"})
	must(t, err)
	flipByte(t, b.KernelPath())
	err = b.Verify()
	if err == nil || !strings.Contains(err.Error(), "hull kernel build --force") || strings.Contains(err.Error(), "re-import") {
		t.Errorf("Verify() = %v; want advice to run hull kernel build --force", err)
	}
}

// A build of a name another build already took tags it: the name means
// the latest, and SetTag gives it back.
func TestAddBuiltTagsItsName(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	plain, err := s.AddBuilt(ctx, Built{Name: "tuned", Release: "6.1.99-hull", Kernel: writeTemp(t, "vmlinux", fakeVmlinux("plain")), BuildKey: "plain"})
	must(t, err)
	custom, err := s.AddBuilt(ctx, Built{Name: "tuned", Release: "6.1.99-hull", Kernel: writeTemp(t, "vmlinux", fakeVmlinux("custom")), BuildKey: "custom"})
	must(t, err)
	must(t, s.SetDefault(plain.Digest)) // the tag outranks the default
	if got, err := s.Get("tuned"); err != nil || got.Digest != custom.Digest {
		t.Errorf("Get(tuned) = %v, %v; want the custom build %s", got, err, custom.Digest)
	}
	must(t, s.SetTag("tuned", plain.Digest))
	if got, err := s.Get("tuned"); err != nil || got.Digest != plain.Digest {
		t.Errorf("Get(tuned) after SetTag = %v, %v; want the plain build %s", got, err, plain.Digest)
	}
	if _, err := os.Stat(filepath.Join(s.Dir, "tags", "tuned")); err != nil {
		t.Errorf("no tag file: %v", err)
	}
}
