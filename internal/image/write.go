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

	erofs "github.com/erofs/go-erofs"

	"github.com/hullvm/hull/internal/initramfs"
	"github.com/hullvm/hull/internal/manifest"
)

// An image is two files:
//
//   - the app disk: the app tree as an EROFS filesystem, attached to the
//     VM as a read-only virtio block device and mounted as the app's root.
//     Its pages are read on demand and can be evicted, so the guest needs
//     RAM for what the app touches, not for the whole tree, and the root is
//     read-only by construction.
//   - the initramfs: /init, the kernel modules it loads, and the manifest,
//     which records the app disk's digest. The image digest is the
//     initramfs digest, so it covers the app disk too.

// Module is a kernel module to place in the image, in load order.
type Module struct {
	Name string // module name, e.g. "virtio_mmio"
	Src  string // host path of the .ko
	Why  string // e.g. "virtio devices on the microvm bus"
}

// WriteAppDisk writes the tree as an EROFS image to out (a new file) and
// returns the file records with sizes and digests, in path order. All
// entries belong to root with time zero, so the bytes depend only on the
// tree's content.
func WriteAppDisk(out *os.File, t *Tree, tmpDir string) ([]manifest.File, error) {
	w := erofs.Create(out, erofs.WithBuildTime(0, 0), erofs.WithTempDir(tmpDir))
	records := t.records()
	h := sha256.New()
	for i, e := range t.Entries() {
		var err error
		switch e.Type {
		case Dir:
			err = w.Mkdir(e.Path, filePerm(e.Perm))
		case Symlink:
			err = w.Symlink(e.Link, e.Path)
		case File:
			var size int64
			size, err = writeErofsFile(w, e, h)
			records[i].Size = size
			records[i].SHA256 = hex.EncodeToString(h.Sum(nil))
			if err == nil {
				err = w.Chmod(e.Path, filePerm(e.Perm))
			}
		}
		if err != nil {
			return nil, fmt.Errorf("writing %s to the app disk: %w", e.Path, err)
		}
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("writing the app disk: %w", err)
	}
	return records, nil
}

func filePerm(p uint32) os.FileMode { return os.FileMode(p & 0o777) }

func writeErofsFile(w *erofs.Writer, e *Entry, h hash.Hash) (int64, error) {
	h.Reset()
	f, err := w.Create(e.Path)
	if err != nil {
		return 0, err
	}
	var src io.Reader
	if e.Src == "" {
		src = bytes.NewReader(e.Data)
	} else {
		in, err := os.Open(e.Src)
		if err != nil {
			f.Close()
			return 0, err
		}
		defer in.Close()
		src = in
	}
	n, err := io.Copy(io.MultiWriter(f, h), src)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return n, err
}

// SystemParts is what the initramfs holds.
type SystemParts struct {
	Init     string // host path of the static hull-init binary
	Modules  []Module
	Manifest *manifest.Manifest // Modules and System are filled in here
	Codec    initramfs.Codec
}

// WriteSystem streams the compressed initramfs to w: the modules, the
// manifest and /init.
func WriteSystem(w io.Writer, p SystemParts) error {
	cw, err := initramfs.Compress(w, p.Codec)
	if err != nil {
		return err
	}
	a := initramfs.NewWriter(cw)
	h := sha256.New()
	for _, d := range []string{manifest.AppRoot, "hull"} {
		if err := a.Dir(strings.TrimPrefix(d, "/"), 0o700); err != nil {
			return err
		}
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

// writeFile copies one entry's content into the archive, hashing it into
// h (reset first).
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
