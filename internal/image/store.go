package image

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/hullvm/hull/internal/initramfs"
	"github.com/hullvm/hull/internal/manifest"
)

// Store keeps images by content digest under Dir:
//
//	blobs/<digest>/initramfs.img   the compressed initramfs
//	blobs/<digest>/manifest.json   a copy of its manifest, for inspect
//	refs/<name>.json               name → digest, with creation time
//	tmp/                           work in progress; never read
//
// Every write goes to tmp/ first and is renamed into place, so a failed
// or interrupted build leaves no blob and no ref.
type Store struct {
	Dir string
}

// Ref is a named image.
type Ref struct {
	Name    string    `json:"name"`
	Digest  string    `json:"digest"`
	Created time.Time `json:"created"`
	Size    int64     `json:"size"`
	Codec   string    `json:"codec"`
	Kernel  string    `json:"kernel"` // kernel bundle digest
	Program string    `json:"program"`
}

// ErrNotFound is returned for an unknown image name or digest.
var ErrNotFound = errors.New("no such image")

const (
	blobFile     = "initramfs.img"
	appDiskFile  = "app.erofs"
	manifestFile = "manifest.json"
)

func (s *Store) dir(parts ...string) string {
	return filepath.Join(append([]string{s.Dir}, parts...)...)
}

// Txn is an image being written into the store's tmp/ directory. Commit
// moves it into place; Abort (safe after Commit) removes what is left.
type Txn struct {
	s   *Store
	dir string
}

// Begin starts writing a new image.
func (s *Store) Begin() (*Txn, error) {
	for _, d := range []string{"blobs", "refs", "tmp"} {
		if err := os.MkdirAll(s.dir(d), 0o755); err != nil {
			return nil, fmt.Errorf("creating image store: %w", err)
		}
	}
	dir, err := os.MkdirTemp(s.dir("tmp"), "build-")
	if err != nil {
		return nil, fmt.Errorf("creating image store temp dir: %w", err)
	}
	return &Txn{s: s, dir: dir}, nil
}

// AppDiskPath and SystemPath are where the two image files are written.
func (t *Txn) AppDiskPath() string { return filepath.Join(t.dir, appDiskFile) }

// SystemPath is where the initramfs is written.
func (t *Txn) SystemPath() string { return filepath.Join(t.dir, blobFile) }

// TempDir is scratch space that disappears with the transaction.
func (t *Txn) TempDir() (string, error) { return os.MkdirTemp(t.dir, "scratch-") }

// Abort removes the transaction's files.
func (t *Txn) Abort() { os.RemoveAll(t.dir) }

// Commit stores the written files under the initramfs digest and names
// the image. The manifest must be the one written into the initramfs.
func (t *Txn) Commit(name string, codec initramfs.Codec, man *manifest.Manifest) (*Ref, error) {
	s := t.s
	digest, size, err := fileSHA256(t.SystemPath())
	if err != nil {
		return nil, fmt.Errorf("hashing image: %w", err)
	}
	if st, err := os.Stat(t.AppDiskPath()); err == nil {
		size += st.Size()
	}
	mb, err := man.Marshal()
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(t.dir, manifestFile), mb, 0o644); err != nil {
		return nil, fmt.Errorf("writing manifest copy: %w", err)
	}
	ents, _ := os.ReadDir(t.dir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "scratch-") {
			os.RemoveAll(filepath.Join(t.dir, e.Name()))
		}
	}
	for _, f := range []string{blobFile, appDiskFile} {
		if fh, err := os.Open(filepath.Join(t.dir, f)); err == nil {
			err = fh.Sync()
			fh.Close()
			if err != nil {
				return nil, fmt.Errorf("writing image: %w", err)
			}
		}
	}
	blob := s.dir("blobs", digest)
	if err := os.Rename(t.dir, blob); err != nil {
		// An identical image is already stored: the content is the same
		// by construction, so keep the existing one.
		if _, statErr := os.Stat(filepath.Join(blob, blobFile)); statErr != nil {
			return nil, fmt.Errorf("storing image: %w", err)
		}
	}
	old, _ := s.Get(name)
	ref := &Ref{
		Name: name, Digest: digest, Created: time.Now().UTC().Truncate(time.Second),
		Size: size, Codec: string(codec), Kernel: man.Kernel.Digest, Program: man.Program,
	}
	if err := s.writeRef(ref); err != nil {
		return nil, err
	}
	if old != nil && old.Digest != digest {
		s.dropIfUnused(old.Digest)
	}
	return ref, nil
}

func fileSHA256(p string) (string, int64, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

func (s *Store) writeRef(ref *Ref) error {
	b, err := json.MarshalIndent(ref, "", " ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(s.dir("tmp"), "ref-")
	if err != nil {
		return fmt.Errorf("writing image name: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("writing image name: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing image name: %w", err)
	}
	if err := os.Rename(tmp.Name(), s.dir("refs", ref.Name+".json")); err != nil {
		return fmt.Errorf("writing image name: %w", err)
	}
	return nil
}

// dropIfUnused removes a blob no ref names any more.
func (s *Store) dropIfUnused(digest string) {
	refs, err := s.List()
	if err != nil {
		return
	}
	for _, r := range refs {
		if r.Digest == digest {
			return
		}
	}
	os.RemoveAll(s.dir("blobs", digest))
}

// Get finds an image by name, full digest or unique digest prefix (at
// least 6 hex digits, optionally "sha256:"-prefixed).
func (s *Store) Get(ref string) (*Ref, error) {
	if validName(ref) {
		b, err := os.ReadFile(s.dir("refs", ref+".json"))
		if err == nil {
			var r Ref
			if err := json.Unmarshal(b, &r); err != nil {
				return nil, fmt.Errorf("image %s: corrupt ref: %w", ref, err)
			}
			return &r, nil
		}
		if !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("image %s: %w", ref, err)
		}
	}
	d := strings.TrimPrefix(ref, "sha256:")
	if len(d) >= 6 && isHex(d) {
		refs, err := s.List()
		if err != nil {
			return nil, err
		}
		var match *Ref
		for _, r := range refs {
			if strings.HasPrefix(r.Digest, d) {
				if match != nil && match.Digest != r.Digest {
					return nil, fmt.Errorf("image digest prefix %s is ambiguous: give more digits", d)
				}
				match = r
			}
		}
		if match != nil {
			return match, nil
		}
	}
	return nil, fmt.Errorf("%w: %s", ErrNotFound, ref)
}

func validName(n string) bool {
	return n != "" && !strings.ContainsAny(n, `/\`) && n != "." && n != ".."
}

func isHex(s string) bool {
	for _, c := range s {
		if !strings.ContainsRune("0123456789abcdef", c) {
			return false
		}
	}
	return true
}

// List returns the named images sorted by name.
func (s *Store) List() ([]*Ref, error) {
	ents, err := os.ReadDir(s.dir("refs"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing images: %w", err)
	}
	var out []*Ref
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		b, err := os.ReadFile(s.dir("refs", e.Name()))
		if err != nil {
			continue
		}
		var r Ref
		if json.Unmarshal(b, &r) == nil {
			out = append(out, &r)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Remove deletes a named image and its blob when nothing else names it.
func (s *Store) Remove(name string) error {
	r, err := s.Get(name)
	if err != nil {
		return err
	}
	if err := os.Remove(s.dir("refs", r.Name+".json")); err != nil {
		return fmt.Errorf("removing image %s: %w", name, err)
	}
	s.dropIfUnused(r.Digest)
	return nil
}

// BlobPath is the stored compressed initramfs of an image.
func (s *Store) BlobPath(r *Ref) string { return s.dir("blobs", r.Digest, blobFile) }

// AppDiskPath is the stored app disk (EROFS) of an image.
func (s *Store) AppDiskPath(r *Ref) string { return s.dir("blobs", r.Digest, appDiskFile) }

// Manifest reads the manifest stored beside the image.
func (s *Store) Manifest(r *Ref) (*manifest.Manifest, error) {
	b, err := os.ReadFile(s.dir("blobs", r.Digest, manifestFile))
	if err != nil {
		return nil, fmt.Errorf("image %s: reading manifest: %w", r.Name, err)
	}
	return manifest.Unmarshal(b)
}

// Verify re-hashes the stored initramfs against the digest it is stored
// under and the app disk against the digest its manifest records, so a
// tampered image is never booted.
func (s *Store) Verify(r *Ref) error {
	got, _, err := fileSHA256(s.BlobPath(r))
	if err != nil {
		return fmt.Errorf("image %s: %w", r.Name, err)
	}
	if got != r.Digest {
		return fmt.Errorf("image %s: stored initramfs has digest %s, want %s: the store was modified; rebuild the image", r.Name, got[:12], r.Digest[:12])
	}
	m, err := s.Manifest(r)
	if err != nil {
		return err
	}
	got, _, err = fileSHA256(s.AppDiskPath(r))
	if err != nil {
		return fmt.Errorf("image %s: app disk: %w", r.Name, err)
	}
	if got != m.AppDisk.SHA256 {
		return fmt.Errorf("image %s: stored app disk has digest %s, want %s: the store was modified; rebuild the image", r.Name, got[:12], short12(m.AppDisk.SHA256))
	}
	return nil
}

func short12(s string) string {
	if len(s) > 12 {
		return s[:12]
	}
	return s
}
