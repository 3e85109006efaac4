package image_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/hullvm/hull/internal/image"
	"github.com/hullvm/hull/internal/initramfs"
	"github.com/hullvm/hull/internal/manifest"
)

// fixture is a small image's inputs on disk.
type fixture struct {
	dir     string
	init    string
	modules []image.Module
	hostBin string
}

func newFixture(t *testing.T) fixture {
	t.Helper()
	dir := t.TempDir()
	return fixture{
		dir:     dir,
		init:    writeHostFile(t, dir, "hull-init", "\x7fELF fake init", 0o755),
		hostBin: writeHostFile(t, dir, "server", "\x7fELF fake server program", 0o755),
		modules: []image.Module{
			{Name: "virtio_mmio", Src: writeHostFile(t, dir, "virtio_mmio.ko", "module one", 0o644), Why: "bus"},
			{Name: "virtio_console", Src: writeHostFile(t, dir, "virtio_console.ko", "module two!", 0o644), Why: "ports"},
		},
	}
}

// tree builds the fixture's app tree, adding entries in the given order
// of the steps (any order must give the same image).
func (f fixture) tree(t *testing.T, reverse bool) *image.Tree {
	t.Helper()
	steps := []image.Entry{
		{Path: "/usr/lib", Type: image.Dir, Perm: 0o755, Reason: "dir", Origin: image.Closure},
		{Path: "/lib", Type: image.Symlink, Link: "usr/lib", Reason: "merged usr", Origin: image.Closure},
		{Path: "/app/server", Type: image.File, Perm: 0o755, Src: f.hostBin, Reason: "the program", Origin: image.Closure},
		{Path: "/etc/hosts", Type: image.File, Perm: 0o444, Data: []byte("127.0.0.1\tlocalhost\n"), Reason: "generated: hosts", Origin: image.Generated},
		{Path: "/etc/empty", Type: image.File, Perm: 0o444, Data: nil, Reason: "generated: empty", Origin: image.Generated},
		{Path: "/tmp", Type: image.Dir, Perm: 0o755, Reason: "mount point", Origin: image.Generated},
	}
	tr := image.NewTree()
	for i := range steps {
		e := steps[i]
		if reverse {
			e = steps[len(steps)-1-i]
		}
		mustAdd(t, tr, e)
	}
	return tr
}

func newManifest() *manifest.Manifest {
	return &manifest.Manifest{Version: manifest.Version, Name: "server", Program: "/app/server", Cwd: "/"}
}

func writeImage(t *testing.T, p image.Parts) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := image.Write(&buf, p); err != nil {
		t.Fatalf("Write: %v", err)
	}
	return buf.Bytes()
}

// archived is one entry read back from an image.
type archived struct {
	entry initramfs.Entry
	data  []byte
}

// readImage decompresses and reads an image, keeping entry order.
func readImage(t *testing.T, img []byte) ([]string, map[string]archived) {
	t.Helper()
	rc, _, err := initramfs.Decompress(bytes.NewReader(img))
	if err != nil {
		t.Fatalf("Decompress: %v", err)
	}
	t.Cleanup(func() { rc.Close() })
	r := initramfs.NewReader(rc)
	var order []string
	byName := map[string]archived{}
	for {
		e, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("reading image: %v", err)
		}
		data, err := io.ReadAll(r)
		if err != nil {
			t.Fatalf("reading %s: %v", e.Name, err)
		}
		if _, dup := byName[e.Name]; dup {
			t.Errorf("entry %s appears twice", e.Name)
		}
		order = append(order, e.Name)
		byName[e.Name] = archived{entry: e, data: data}
	}
	return order, byName
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func TestWriteLayout(t *testing.T) {
	f := newFixture(t)
	m := newManifest()
	img := writeImage(t, image.Parts{Tree: f.tree(t, false), Init: f.init, Modules: f.modules, Manifest: m, Codec: initramfs.Zstd})
	order, got := readImage(t, img)

	if last := order[len(order)-1]; last != "init" {
		t.Errorf("last entry = %s, want init (the kernel runs /init; written last)", last)
	}
	initEntry := got["init"]
	if string(initEntry.data) != "\x7fELF fake init" || initEntry.entry.Perm() != 0o700 || !initEntry.entry.IsRegular() {
		t.Errorf("init = %q mode %o, want the init file with mode 0700", initEntry.data, initEntry.entry.Mode)
	}

	wantApp := map[string]string{ // archive name → kind
		"app": "dir", "app/app": "dir", "app/app/server": "file", "app/etc": "dir", "app/etc/hosts": "file",
		"app/etc/empty": "file", "app/lib": "symlink", "app/tmp": "dir", "app/usr": "dir", "app/usr/lib": "dir",
	}
	for name, kind := range wantApp {
		a, ok := got[name]
		if !ok {
			t.Errorf("image lacks %s", name)
			continue
		}
		if k := kindOf(a.entry); k != kind {
			t.Errorf("%s is a %s, want a %s", name, k, kind)
		}
	}
	if l := got["app/lib"].entry.Link; l != "usr/lib" {
		t.Errorf("app/lib links to %q, want usr/lib", l)
	}
	if d := got["app/app/server"].data; string(d) != "\x7fELF fake server program" {
		t.Errorf("app/app/server content = %q, want the host program", d)
	}
	for name := range got {
		if strings.HasPrefix(name, "app") && wantApp[name] == "" {
			t.Errorf("unexpected app entry %s", name)
		}
	}

	for _, mod := range f.modules {
		name := "hull/modules/" + mod.Name + ".ko"
		want, _ := os.ReadFile(mod.Src)
		if a, ok := got[name]; !ok || !bytes.Equal(a.data, want) || a.entry.Perm() != 0o400 {
			t.Errorf("%s = %q (present %v, mode %o), want %q mode 0400", name, a.data, ok, a.entry.Perm(), want)
		}
	}
	if got["hull"].entry.Perm() != 0o700 || !got["hull"].entry.IsDir() {
		t.Errorf("hull dir mode = %o, want a 0700 directory (the app never sees it)", got["hull"].entry.Mode)
	}

	mj, ok := got["hull/manifest.json"]
	if !ok {
		t.Fatal("image lacks hull/manifest.json")
	}
	stored, err := manifest.Unmarshal(mj.data)
	if err != nil {
		t.Fatalf("stored manifest: %v", err)
	}
	if want := []string{"/hull/modules/virtio_mmio.ko", "/hull/modules/virtio_console.ko"}; !reflect.DeepEqual(stored.Modules, want) {
		t.Errorf("manifest Modules = %q, want %q (load order kept)", stored.Modules, want)
	}
	if len(stored.Files) != len(wantApp) {
		t.Errorf("manifest has %d files, want %d", len(stored.Files), len(wantApp))
	}
	for _, rec := range stored.Files {
		a, ok := got[strings.TrimPrefix(filepath.Join(manifest.AppRoot, rec.Path), "/")]
		if !ok {
			t.Errorf("manifest lists %s, which the image lacks", rec.Path)
			continue
		}
		if rec.Type != kindOf(a.entry) {
			t.Errorf("manifest %s type %s, image has %s", rec.Path, rec.Type, kindOf(a.entry))
		}
		if rec.Type != "file" {
			continue
		}
		if rec.SHA256 != sha(a.data) || rec.Size != int64(len(a.data)) {
			t.Errorf("manifest %s = sha256 %s size %d, want %s size %d (the archived content)", rec.Path, rec.SHA256, rec.Size, sha(a.data), len(a.data))
		}
	}
	var sawInit bool
	for _, s := range stored.System {
		if s.Path == manifest.InitPath {
			sawInit = true
			if s.SHA256 != sha(initEntry.data) {
				t.Errorf("manifest System /init sha256 = %s, want %s", s.SHA256, sha(initEntry.data))
			}
		}
	}
	if !sawInit {
		t.Errorf("manifest System lacks %s", manifest.InitPath)
	}
	// Write fills the caller's manifest too.
	if !reflect.DeepEqual(m.Files, stored.Files) || !reflect.DeepEqual(m.Modules, stored.Modules) {
		t.Errorf("caller's manifest not filled like the stored one")
	}
}

func kindOf(e initramfs.Entry) string {
	switch {
	case e.IsDir():
		return "dir"
	case e.IsSymlink():
		return "symlink"
	case e.IsRegular():
		return "file"
	}
	return "other"
}

// TestWriteReproducible: the same inputs give the same bytes, whatever
// order the tree was filled in and however often the Parts are written.
func TestWriteReproducible(t *testing.T) {
	for _, codec := range []initramfs.Codec{initramfs.Zstd, initramfs.Gzip, initramfs.None} {
		t.Run(string(codec), func(t *testing.T) {
			f := newFixture(t)
			p := image.Parts{Tree: f.tree(t, false), Init: f.init, Modules: f.modules, Manifest: newManifest(), Codec: codec}
			first := writeImage(t, p)
			again := writeImage(t, p)
			if !bytes.Equal(first, again) {
				t.Errorf("writing the same Parts twice gave different bytes (%d vs %d)", len(first), len(again))
			}
			other := writeImage(t, image.Parts{Tree: f.tree(t, true), Init: f.init, Modules: f.modules, Manifest: newManifest(), Codec: codec})
			if !bytes.Equal(first, other) {
				t.Errorf("a tree filled in reverse order gave different bytes (%d vs %d)", len(first), len(other))
			}
		})
	}
}

func TestWriteMissingInit(t *testing.T) {
	f := newFixture(t)
	err := image.Write(io.Discard, image.Parts{Tree: f.tree(t, false), Init: filepath.Join(f.dir, "missing"), Manifest: newManifest(), Codec: initramfs.None})
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Write with missing init = %v, want os.ErrNotExist", err)
	}
}
