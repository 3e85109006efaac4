package image_test

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/hullvm/hull/internal/image"
	"github.com/hullvm/hull/internal/initramfs"
	"github.com/hullvm/hull/internal/manifest"
)

func newStore(t *testing.T) *image.Store {
	t.Helper()
	return &image.Store{Dir: filepath.Join(t.TempDir(), "images")}
}

// put stores an image whose initramfs is system and whose app disk is
// disk, the way the builder does.
func put(t *testing.T, s *image.Store, name, system, disk string) *image.Ref {
	t.Helper()
	txn, err := s.Begin()
	if err != nil {
		t.Fatalf("Begin: %v", err)
	}
	t.Cleanup(txn.Abort)
	if err := os.WriteFile(txn.AppDiskPath(), []byte(disk), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(txn.SystemPath(), []byte(system), 0o644); err != nil {
		t.Fatal(err)
	}
	scratch, err := txn.TempDir()
	if err != nil {
		t.Fatalf("TempDir: %v", err)
	}
	if err := os.WriteFile(filepath.Join(scratch, "junk"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	m := &manifest.Manifest{Version: manifest.Version, Name: name, Program: "/app/" + name, Kernel: manifest.Kernel{Digest: "k123"},
		AppDisk: manifest.AppDisk{FS: "erofs", Size: int64(len(disk)), SHA256: sha([]byte(disk))}}
	ref, err := txn.Commit(name, initramfs.Zstd, m)
	if err != nil {
		t.Fatalf("Commit(%s): %v", name, err)
	}
	txn.Abort() // as the builder's deferred Abort: removes what Commit left
	return ref
}

// dirNames lists a store subdirectory (nil for a missing one).
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	sort.Strings(out)
	return out
}

func flipByte(t *testing.T, p string) {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x01
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestStoreCommitGet(t *testing.T) {
	s := newStore(t)
	ref := put(t, s, "web", "initramfs bytes", "app disk bytes")
	if want := sha([]byte("initramfs bytes")); ref.Digest != want {
		t.Errorf("Digest = %s, want sha256 of the initramfs %s", ref.Digest, want)
	}
	if want := int64(len("initramfs bytes") + len("app disk bytes")); ref.Size != want {
		t.Errorf("Size = %d, want %d (both files)", ref.Size, want)
	}
	if ref.Codec != "zstd" || ref.Kernel != "k123" || ref.Program != "/app/web" || ref.Name != "web" {
		t.Errorf("Ref = %+v, want codec zstd, kernel k123, program /app/web", ref)
	}
	if b, err := os.ReadFile(s.BlobPath(ref)); err != nil || string(b) != "initramfs bytes" {
		t.Errorf("BlobPath content = %q, %v; want the initramfs", b, err)
	}
	if b, err := os.ReadFile(s.AppDiskPath(ref)); err != nil || string(b) != "app disk bytes" {
		t.Errorf("AppDiskPath content = %q, %v; want the app disk", b, err)
	}
	if got, want := dirNames(t, filepath.Dir(s.BlobPath(ref))), []string{"app.erofs", "initramfs.img", "manifest.json"}; !reflect.DeepEqual(got, want) {
		t.Errorf("blob dir holds %q, want %q (scratch space removed)", got, want)
	}
	if m, err := s.Manifest(ref); err != nil || m.Program != "/app/web" {
		t.Errorf("Manifest() = %+v, %v; want the committed manifest", m, err)
	}
	if tmp := dirNames(t, filepath.Join(s.Dir, "tmp")); len(tmp) != 0 {
		t.Errorf("tmp/ = %q after Commit, want empty", tmp)
	}

	for _, l := range []struct{ name, ref string }{
		{"name", "web"},
		{"full digest", ref.Digest},
		{"digest prefix", ref.Digest[:6]},
		{"sha256 prefix", "sha256:" + ref.Digest[:12]},
	} {
		t.Run(l.name, func(t *testing.T) {
			got, err := s.Get(l.ref)
			if err != nil {
				t.Fatalf("Get(%q): %v", l.ref, err)
			}
			if got.Digest != ref.Digest || got.Name != "web" {
				t.Errorf("Get(%q) = %s/%s, want web/%s", l.ref, got.Name, got.Digest, ref.Digest)
			}
		})
	}
	for _, missing := range []string{"nope", ref.Digest[:5], "zzzzzzzz", "../web", ""} {
		t.Run("missing/"+missing, func(t *testing.T) {
			if got, err := s.Get(missing); !errors.Is(err, image.ErrNotFound) {
				t.Errorf("Get(%q) = %+v, %v; want ErrNotFound", missing, got, err)
			}
		})
	}
}

func TestStoreList(t *testing.T) {
	s := newStore(t)
	if refs, err := s.List(); err != nil || len(refs) != 0 {
		t.Fatalf("List on an empty store = %v, %v; want none, nil", refs, err)
	}
	put(t, s, "zeta", "z", "dz")
	put(t, s, "alpha", "a", "da")
	put(t, s, "mid", "m", "dm")
	refs, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range refs {
		names = append(names, r.Name)
	}
	if want := []string{"alpha", "mid", "zeta"}; !reflect.DeepEqual(names, want) {
		t.Errorf("List names = %q, want %q (sorted)", names, want)
	}
}

func TestStoreRemove(t *testing.T) {
	s := newStore(t)
	a := put(t, s, "a", "shared system", "shared disk")
	put(t, s, "b", "shared system", "shared disk")
	if err := s.Remove("a"); err != nil {
		t.Fatalf("Remove(a): %v", err)
	}
	if _, err := s.Get("a"); !errors.Is(err, image.ErrNotFound) {
		t.Errorf("Get(a) after Remove = %v, want ErrNotFound", err)
	}
	if _, err := os.Stat(s.BlobPath(a)); err != nil {
		t.Errorf("blob still named by b was removed: %v", err)
	}
	if err := s.Remove("b"); err != nil {
		t.Fatalf("Remove(b): %v", err)
	}
	if blobs := dirNames(t, filepath.Join(s.Dir, "blobs")); len(blobs) != 0 {
		t.Errorf("blobs/ = %q after removing the last name, want empty", blobs)
	}
	if err := s.Remove("b"); !errors.Is(err, image.ErrNotFound) {
		t.Errorf("second Remove(b) = %v, want ErrNotFound", err)
	}
}

func TestStoreVerify(t *testing.T) {
	tests := []struct {
		name   string
		tamper func(t *testing.T, s *image.Store, r *image.Ref)
		want   string // "" means Verify passes
	}{
		{"untouched", func(*testing.T, *image.Store, *image.Ref) {}, ""},
		{"initramfs byte flipped", func(t *testing.T, s *image.Store, r *image.Ref) { flipByte(t, s.BlobPath(r)) }, "initramfs"},
		{"app disk byte flipped", func(t *testing.T, s *image.Store, r *image.Ref) { flipByte(t, s.AppDiskPath(r)) }, "app disk"},
		{"app disk removed", func(t *testing.T, s *image.Store, r *image.Ref) { os.Remove(s.AppDiskPath(r)) }, "app disk"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t)
			ref := put(t, s, "web", "some initramfs content", "some app disk content")
			tt.tamper(t, s, ref)
			err := s.Verify(ref)
			if tt.want == "" {
				if err != nil {
					t.Errorf("Verify = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), "web") || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Verify = %v, want an error naming the image and the %s", err, tt.want)
			}
		})
	}
}

// TestStoreAbortLeavesNothing: a build that fails before Commit leaves no
// blob, no name and no temp files.
func TestStoreAbortLeavesNothing(t *testing.T) {
	s := newStore(t)
	txn, err := s.Begin()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(txn.SystemPath(), []byte("half an image"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := txn.TempDir(); err != nil {
		t.Fatal(err)
	}
	txn.Abort()
	for _, sub := range []string{"blobs", "refs", "tmp"} {
		if names := dirNames(t, filepath.Join(s.Dir, sub)); len(names) != 0 {
			t.Errorf("%s/ holds %q after Abort, want nothing", sub, names)
		}
	}
	if _, err := s.Get("web"); !errors.Is(err, image.ErrNotFound) {
		t.Errorf("Get after Abort = %v, want ErrNotFound", err)
	}
}

func TestStoreCommitWithoutInitramfs(t *testing.T) {
	s := newStore(t)
	txn, err := s.Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer txn.Abort()
	m := &manifest.Manifest{Version: manifest.Version, Name: "web", Program: "/app/web"}
	if _, err := txn.Commit("web", initramfs.Zstd, m); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Commit with no initramfs written = %v, want os.ErrNotExist", err)
	}
	txn.Abort()
	for _, sub := range []string{"blobs", "refs", "tmp"} {
		if names := dirNames(t, filepath.Join(s.Dir, sub)); len(names) != 0 {
			t.Errorf("%s/ holds %q after a failed Commit, want nothing", sub, names)
		}
	}
}

func TestStoreRecommit(t *testing.T) {
	s := newStore(t)
	old := put(t, s, "web", "version one", "disk one")
	same := put(t, s, "web", "version one", "disk one")
	if same.Digest != old.Digest {
		t.Fatalf("re-Commit of identical content: digest %s, want %s", same.Digest, old.Digest)
	}
	if _, err := os.Stat(s.BlobPath(old)); err != nil {
		t.Fatalf("re-Commit of identical content removed its blob: %v", err)
	}
	newer := put(t, s, "web", "version two", "disk two")
	if newer.Digest == old.Digest {
		t.Fatal("different content got the same digest")
	}
	if blobs := dirNames(t, filepath.Join(s.Dir, "blobs")); !reflect.DeepEqual(blobs, []string{newer.Digest}) {
		t.Errorf("blobs/ = %q, want only %s (the unnamed old blob removed)", blobs, newer.Digest)
	}
	if got, err := s.Get("web"); err != nil || got.Digest != newer.Digest {
		t.Errorf("Get(web) = %+v, %v; want digest %s", got, err, newer.Digest)
	}
	if tmp := dirNames(t, filepath.Join(s.Dir, "tmp")); len(tmp) != 0 {
		t.Errorf("tmp/ = %q, want empty", tmp)
	}
}
