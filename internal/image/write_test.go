package image_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	erofs "github.com/erofs/go-erofs"

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
		hostBin: writeHostFile(t, dir, "server", "\x7fELF fake server program", 0o700),
		modules: []image.Module{
			{Name: "virtio_mmio", Src: writeHostFile(t, dir, "virtio_mmio.ko", "module one", 0o644), Why: "bus"},
			{Name: "virtio_console", Src: writeHostFile(t, dir, "virtio_console.ko", "module two!", 0o644), Why: "ports"},
		},
	}
}

// tree builds the fixture's app tree, adding the entries forwards or in
// reverse (any order must give the same image).
func (f fixture) tree(t *testing.T, reverse bool) *image.Tree {
	t.Helper()
	steps := []image.Entry{
		{Path: "/usr/lib", Type: image.Dir, Perm: 0o755, Reason: "dir", Origin: image.Closure},
		{Path: "/lib", Type: image.Symlink, Link: "usr/lib", Reason: "merged usr", Origin: image.Closure},
		{Path: "/app/server", Type: image.File, Perm: 0o700, Src: f.hostBin, Reason: "the program", Origin: image.Closure},
		{Path: "/etc/hosts", Type: image.File, Perm: 0o444, Data: []byte("127.0.0.1\tlocalhost\n"), Reason: "generated: hosts", Origin: image.Generated},
		{Path: "/etc/hosts", Type: image.File, Perm: 0o644, Src: f.hostBin, Reason: "declared: files[0]", Origin: image.User},
		{Path: "/etc/empty", Type: image.File, Perm: 0o444, Data: nil, Reason: "generated: empty", Origin: image.Generated},
		{Path: "/etc/localtime", Type: image.Symlink, Link: "/usr/share/zoneinfo/UTC", Reason: "tz", Origin: image.Generated},
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

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// writeAppDisk writes tr to a new file in a temp dir and returns its
// bytes and records.
func writeAppDisk(t *testing.T, tr *image.Tree) ([]byte, []manifest.File) {
	t.Helper()
	dir := t.TempDir()
	out, err := os.Create(filepath.Join(dir, "app.erofs"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { out.Close() })
	scratch := filepath.Join(dir, "scratch")
	if err := os.Mkdir(scratch, 0o755); err != nil {
		t.Fatal(err)
	}
	records, err := image.WriteAppDisk(out, tr, scratch)
	if err != nil {
		t.Fatalf("WriteAppDisk: %v", err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out.Name())
	if err != nil {
		t.Fatal(err)
	}
	return b, records
}

func TestWriteAppDisk(t *testing.T) {
	f := newFixture(t)
	tr := f.tree(t, false)
	disk, records := writeAppDisk(t, tr)
	fsys, err := erofs.Open(bytes.NewReader(disk))
	if err != nil {
		t.Fatalf("erofs.Open: %v", err)
	}

	ents := tr.Entries()
	if len(records) != len(ents) {
		t.Fatalf("WriteAppDisk returned %d records for %d entries", len(records), len(ents))
	}
	for i, e := range ents {
		rec := records[i]
		if rec.Path != e.Path || rec.Type != e.Type.String() || rec.Reason != e.Reason || rec.Overrides != e.Overrides {
			t.Errorf("record %d = %+v, want path %s type %s reason %q overrides %q", i, rec, e.Path, e.Type, e.Reason, e.Overrides)
		}
		name := strings.TrimPrefix(e.Path, "/")
		if name == "" {
			name = "."
		}
		info, err := fs.Lstat(fsys, name)
		if err != nil {
			t.Errorf("app disk lacks %s: %v", e.Path, err)
			continue
		}
		switch e.Type {
		case image.Dir:
			if !info.IsDir() || uint32(info.Mode().Perm()) != e.Perm {
				t.Errorf("%s on disk = %v, want dir %o", e.Path, info.Mode(), e.Perm)
			}
		case image.Symlink:
			target, err := fs.ReadLink(fsys, name)
			if info.Mode()&fs.ModeSymlink == 0 || err != nil || target != e.Link {
				t.Errorf("%s on disk = %v -> %q (%v), want symlink to %q", e.Path, info.Mode(), target, err, e.Link)
			}
		case image.File:
			data, err := fs.ReadFile(fsys, name)
			if err != nil {
				t.Errorf("reading %s from the app disk: %v", e.Path, err)
				continue
			}
			if !info.Mode().IsRegular() || uint32(info.Mode().Perm()) != e.Perm {
				t.Errorf("%s on disk = %v, want file %o", e.Path, info.Mode(), e.Perm)
			}
			if rec.SHA256 != sha(data) || rec.Size != int64(len(data)) {
				t.Errorf("record %s = sha256 %s size %d, want %s size %d (the content on disk)", e.Path, rec.SHA256, rec.Size, sha(data), len(data))
			}
		}
	}

	// The user's /etc/hosts won, and the record says what it replaced.
	hosts, err := fs.ReadFile(fsys, "etc/hosts")
	if err != nil || string(hosts) != "\x7fELF fake server program" {
		t.Errorf("etc/hosts on disk = %q, %v; want the user's file", hosts, err)
	}
	// A 0700 program becomes runnable by the unprivileged app user.
	if info, err := fs.Stat(fsys, "app/server"); err != nil || info.Mode().Perm() != 0o755 {
		t.Errorf("app/server mode = %v, %v; want 0755", info, err)
	}
}

// TestWriteAppDiskReproducible: the same tree gives the same bytes,
// whatever order it was filled in.
func TestWriteAppDiskReproducible(t *testing.T) {
	f := newFixture(t)
	first, _ := writeAppDisk(t, f.tree(t, false))
	again, _ := writeAppDisk(t, f.tree(t, false))
	reversed, _ := writeAppDisk(t, f.tree(t, true))
	if !bytes.Equal(first, again) {
		t.Errorf("two app disks of the same tree differ (%d vs %d bytes)", len(first), len(again))
	}
	if !bytes.Equal(first, reversed) {
		t.Errorf("a tree filled in reverse order gave a different app disk (%d vs %d bytes)", len(first), len(reversed))
	}
}

func writeSystem(t *testing.T, p image.SystemParts) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := image.WriteSystem(&buf, p); err != nil {
		t.Fatalf("WriteSystem: %v", err)
	}
	return buf.Bytes()
}

// archived is one entry read back from an initramfs.
type archived struct {
	entry initramfs.Entry
	data  []byte
}

// readInitramfs decompresses and reads an initramfs, keeping entry order.
func readInitramfs(t *testing.T, img []byte) ([]string, map[string]archived) {
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
			t.Fatalf("reading initramfs: %v", err)
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

func TestWriteSystem(t *testing.T) {
	f := newFixture(t)
	_, records := writeAppDisk(t, f.tree(t, false))
	m := newManifest()
	m.Files = records
	m.AppDisk = manifest.AppDisk{FS: "erofs", Size: 4096, SHA256: strings.Repeat("cd", 32)}
	img := writeSystem(t, image.SystemParts{Init: f.init, Modules: f.modules, Manifest: m, Codec: initramfs.Zstd})
	order, got := readInitramfs(t, img)

	wantNames := []string{"app", "hull", "hull/modules", "hull/modules/virtio_mmio.ko", "hull/modules/virtio_console.ko", "hull/manifest.json", "init"}
	if !reflect.DeepEqual(order, wantNames) {
		t.Errorf("initramfs entries = %q, want %q (no app files; /init last)", order, wantNames)
	}
	for _, d := range []string{"app", "hull", "hull/modules"} {
		if e := got[d].entry; !e.IsDir() || e.Perm() != 0o700 {
			t.Errorf("%s = mode %o, want a 0700 directory", d, e.Mode)
		}
	}
	initEntry := got["init"]
	if string(initEntry.data) != "\x7fELF fake init" || initEntry.entry.Perm() != 0o700 || !initEntry.entry.IsRegular() {
		t.Errorf("init = %q mode %o, want the init file with mode 0700", initEntry.data, initEntry.entry.Mode)
	}
	for _, mod := range f.modules {
		name := "hull/modules/" + mod.Name + ".ko"
		want, _ := os.ReadFile(mod.Src)
		if a := got[name]; !bytes.Equal(a.data, want) || a.entry.Perm() != 0o400 {
			t.Errorf("%s = %q mode %o, want %q mode 0400", name, a.data, a.entry.Perm(), want)
		}
	}

	stored, err := manifest.Unmarshal(got["hull/manifest.json"].data)
	if err != nil {
		t.Fatalf("stored manifest: %v", err)
	}
	if want := []string{"/hull/modules/virtio_mmio.ko", "/hull/modules/virtio_console.ko"}; !reflect.DeepEqual(stored.Modules, want) {
		t.Errorf("manifest Modules = %q, want %q (load order kept)", stored.Modules, want)
	}
	if !reflect.DeepEqual(stored.Files, records) || stored.AppDisk != m.AppDisk {
		t.Errorf("stored manifest lost the app disk's records or digest")
	}
	sums := map[string]string{}
	for _, s := range stored.System {
		sums[s.Path] = s.SHA256
	}
	for name, a := range got {
		if !a.entry.IsRegular() || name == "hull/manifest.json" {
			continue
		}
		if sums["/"+name] != sha(a.data) {
			t.Errorf("manifest System %s sha256 = %q, want %s", "/"+name, sums["/"+name], sha(a.data))
		}
	}
	if len(stored.System) != 3 {
		t.Errorf("manifest System has %d records, want 3 (two modules, init)", len(stored.System))
	}
	if !reflect.DeepEqual(m.Modules, stored.Modules) || !reflect.DeepEqual(m.System, stored.System) {
		t.Errorf("caller's manifest not filled like the stored one")
	}
}

func TestWriteSystemWithoutModules(t *testing.T) {
	f := newFixture(t)
	order, _ := readInitramfs(t, writeSystem(t, image.SystemParts{Init: f.init, Manifest: newManifest(), Codec: initramfs.Gzip}))
	if want := []string{"app", "hull", "hull/manifest.json", "init"}; !reflect.DeepEqual(order, want) {
		t.Errorf("initramfs entries = %q, want %q", order, want)
	}
}

// TestWriteSystemReproducible: the same inputs give the same bytes, for
// every codec and however often the parts are written.
func TestWriteSystemReproducible(t *testing.T) {
	for _, codec := range []initramfs.Codec{initramfs.Zstd, initramfs.Gzip, initramfs.None} {
		t.Run(string(codec), func(t *testing.T) {
			f := newFixture(t)
			p := image.SystemParts{Init: f.init, Modules: f.modules, Manifest: newManifest(), Codec: codec}
			first := writeSystem(t, p)
			again := writeSystem(t, p)
			fresh := writeSystem(t, image.SystemParts{Init: f.init, Modules: f.modules, Manifest: newManifest(), Codec: codec})
			if !bytes.Equal(first, again) || !bytes.Equal(first, fresh) {
				t.Errorf("writing the same parts gave different bytes (%d, %d, %d)", len(first), len(again), len(fresh))
			}
		})
	}
}

func TestWriteSystemMissingInit(t *testing.T) {
	f := newFixture(t)
	err := image.WriteSystem(io.Discard, image.SystemParts{Init: filepath.Join(f.dir, "missing"), Manifest: newManifest(), Codec: initramfs.None})
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("WriteSystem with missing init = %v, want os.ErrNotExist", err)
	}
}
