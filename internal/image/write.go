package image

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"os"
	"path"
	"strings"

	"github.com/hullvm/hull/internal/initramfs"
	"github.com/hullvm/hull/internal/manifest"
)

// Module is a kernel module to place in the image, in load order.
type Module struct {
	Name string // module name, e.g. "virtio_mmio"
	Src  string // host path of the .ko
	Why  string // e.g. "virtio devices on the microvm bus"
}

// Parts is everything an image holds besides the kernel.
type Parts struct {
	Tree     *Tree
	Init     string // host path of the static hull-init binary
	Modules  []Module
	Manifest *manifest.Manifest // Files and Modules are filled in by Write
	Codec    initramfs.Codec
}

// Write streams the compressed initramfs to w: the app tree under
// manifest.AppRoot, the modules, the manifest and /init. It fills
// p.Manifest.Files (with sizes and digests) and p.Manifest.Modules.
func Write(w io.Writer, p Parts) error {
	cw, err := initramfs.Compress(w, p.Codec)
	if err != nil {
		return err
	}
	a := initramfs.NewWriter(cw)
	records := p.Tree.records()
	h := sha256.New()
	for i, e := range p.Tree.Entries() {
		name := path.Join(manifest.AppRoot, e.Path)
		switch e.Type {
		case Dir:
			err = a.Dir(name, e.Perm)
		case Symlink:
			err = a.Symlink(name, e.Link)
		case File:
			var size int64
			size, err = writeFile(a, name, e, h)
			records[i].Size = size
			records[i].SHA256 = hex.EncodeToString(h.Sum(nil))
		}
		if err != nil {
			return fmt.Errorf("writing %s: %w", e.Path, err)
		}
	}
	if err := a.Dir("hull", 0o700); err != nil {
		return err
	}
	if len(p.Modules) > 0 {
		if err := a.Dir(strings.TrimPrefix(manifest.ModulesDir, "/"), 0o700); err != nil {
			return err
		}
	}
	p.Manifest.Modules = p.Manifest.Modules[:0]
	p.Manifest.System = p.Manifest.System[:0]
	for _, m := range p.Modules {
		name := path.Join(manifest.ModulesDir, m.Name+".ko")
		size, err := writeFile(a, name, &Entry{Type: File, Src: m.Src, Perm: 0o400}, h)
		if err != nil {
			return fmt.Errorf("writing module %s: %w", m.Name, err)
		}
		p.Manifest.Modules = append(p.Manifest.Modules, name)
		p.Manifest.System = append(p.Manifest.System, manifest.File{
			Path: name, Type: "file", Mode: 0o400, Size: size, SHA256: hex.EncodeToString(h.Sum(nil)),
			Reason: "kernel module the init loads (" + m.Why + ")",
		})
	}
	initSize, initSum, err := fileDigest(p.Init, h)
	if err != nil {
		return fmt.Errorf("reading init: %w", err)
	}
	p.Manifest.System = append(p.Manifest.System, manifest.File{
		Path: manifest.InitPath, Type: "file", Mode: 0o700, Size: initSize, SHA256: initSum,
		Reason: "hull-init: PID 1, locks the app down and supervises it",
	})
	p.Manifest.Files = records
	mb, err := p.Manifest.Marshal()
	if err != nil {
		return err
	}
	if err := a.File(manifest.ManifestPath, 0o400, int64(len(mb)), bytes.NewReader(mb)); err != nil {
		return fmt.Errorf("writing manifest: %w", err)
	}
	if _, err := writeFile(a, manifest.InitPath, &Entry{Type: File, Src: p.Init, Perm: 0o700}, h); err != nil {
		return fmt.Errorf("writing init %s: %w", p.Init, err)
	}
	if err := a.Close(); err != nil {
		return err
	}
	return cw.Close()
}

// fileDigest hashes a host file without keeping it.
func fileDigest(name string, h hash.Hash) (int64, string, error) {
	f, err := os.Open(name)
	if err != nil {
		return 0, "", err
	}
	defer f.Close()
	h.Reset()
	n, err := io.Copy(h, f)
	if err != nil {
		return 0, "", err
	}
	return n, hex.EncodeToString(h.Sum(nil)), nil
}

// writeFile copies one entry's content, hashing it into h (reset first).
func writeFile(a *initramfs.Writer, name string, e *Entry, h hash.Hash) (int64, error) {
	h.Reset()
	if e.Src == "" {
		h.Write(e.Data)
		return int64(len(e.Data)), a.File(name, e.Perm, int64(len(e.Data)), bytes.NewReader(e.Data))
	}
	f, err := os.Open(e.Src)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	if !st.Mode().IsRegular() {
		return 0, fmt.Errorf("%s is not a regular file", e.Src)
	}
	return st.Size(), a.File(name, e.Perm, st.Size(), io.TeeReader(f, h))
}
