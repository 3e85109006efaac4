// Package image assembles the app's file tree — each entry with the reason
// it is there — and writes it, with the init, the kernel modules and the
// manifest, as a compressed initramfs into a content-addressed store.
//
// Invariants: a tree never holds device nodes, setuid/setgid/sticky bits
// on files, or a path reached through one of its own symlinks; entries
// are written sorted with fixed owners and timestamps, so the same inputs
// give the same bytes. The package does not decide what belongs in the
// tree (that is the builder's job) and never executes anything.
package image

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path"
	"sort"
	"strings"

	"github.com/hullvm/hull/internal/filekind"
	"github.com/hullvm/hull/internal/manifest"
)

// Origin ranks who asked for an entry; a higher origin replaces a lower
// one at the same path (the user's /etc/hosts beats the generated one).
type Origin int

// Origins, lowest first.
const (
	Implied   Origin = iota // parent directories
	Generated               // files hull writes (/etc/passwd …)
	Closure                 // the program and what it provably needs
	User                    // files and dirs the spec declares
)

// Type is an entry's file type.
type Type int

// Entry types.
const (
	Dir Type = iota
	File
	Symlink
)

func (t Type) String() string {
	switch t {
	case Dir:
		return "dir"
	case File:
		return "file"
	}
	return "symlink"
}

// Entry is one path of the app tree.
type Entry struct {
	Path   string // absolute guest path, clean
	Type   Type
	Perm   uint32 // rwx bits only
	Src    string // host file with the content (File), or ""
	Data   []byte // content when Src is "" (File)
	Link   string // target (Symlink)
	Reason string
	Origin Origin
	// Overrides is the reason of the lower-origin entry this one replaced.
	Overrides string
}

// Tree is a set of entries keyed by path.
type Tree struct {
	entries map[string]*Entry
}

// NewTree returns a tree holding only the root directory.
func NewTree() *Tree {
	return &Tree{entries: map[string]*Entry{
		"/": {Path: "/", Type: Dir, Perm: 0o755, Reason: "root of the app's filesystem", Origin: Implied},
	}}
}

// ErrConflict reports two different entries wanting the same path.
var ErrConflict = errors.New("conflicting entries")

// Add inserts e, creating parent directories. A path reached through a
// symlink already in the tree is redirected to where the link points, so
// every stored path is physical. Equal origins with different content
// conflict; a higher origin replaces a lower one and records it.
func (t *Tree) Add(e Entry) error {
	if !path.IsAbs(e.Path) {
		return fmt.Errorf("image: %q is not an absolute guest path", e.Path)
	}
	p, err := t.physical(path.Clean(e.Path))
	if err != nil {
		return err
	}
	e.Path = p
	if e.Type != Symlink {
		// Everything is owned by root and read by the unprivileged app
		// user: readable by all, writable by none but root, and nothing
		// that raises privileges (no setuid, setgid or sticky bits). The
		// owner is root, so an execute bit only for the owner would leave
		// a program the app user cannot run: any x bit becomes x for all.
		e.Perm = e.Perm&0o755 | 0o444
		if e.Type == Dir || e.Perm&0o111 != 0 {
			e.Perm |= 0o111
		}
	}
	if err := t.mkdirAll(path.Dir(p), e.Origin); err != nil {
		return err
	}
	old, ok := t.entries[p]
	if !ok {
		t.entries[p] = &e
		return nil
	}
	switch {
	case old.Type == Dir && e.Type == Dir:
		if e.Origin > old.Origin {
			old.Reason, old.Origin = e.Reason, e.Origin
		}
		return nil
	case sameContent(old, &e):
		return nil
	case e.Origin > old.Origin:
		if old.Type == Dir && t.hasChildren(p) {
			return fmt.Errorf("%w: %s is a directory holding other files; cannot replace it with a %s", ErrConflict, p, e.Type)
		}
		e.Overrides = old.Reason
		t.entries[p] = &e
		return nil
	case e.Origin < old.Origin:
		if old.Overrides == "" {
			old.Overrides = e.Reason
		}
		return nil
	}
	return fmt.Errorf("%w at %s: %q and %q", ErrConflict, p, old.Reason, e.Reason)
}

func sameContent(a, b *Entry) bool {
	if a.Type != b.Type {
		return false
	}
	switch a.Type {
	case Symlink:
		return a.Link == b.Link
	case File:
		if a.Perm != b.Perm {
			return false
		}
		if a.Src != "" || b.Src != "" {
			return a.Src == b.Src
		}
		return bytes.Equal(a.Data, b.Data)
	}
	return true
}

func (t *Tree) hasChildren(dir string) bool {
	prefix := strings.TrimSuffix(dir, "/") + "/"
	for p := range t.entries {
		if strings.HasPrefix(p, prefix) {
			return true
		}
	}
	return false
}

func (t *Tree) mkdirAll(dir string, o Origin) error {
	if dir == "/" {
		return nil
	}
	if old, ok := t.entries[dir]; ok {
		if old.Type != Dir {
			return fmt.Errorf("%w: %s is a %s (%s) but files are placed under it", ErrConflict, dir, old.Type, old.Reason)
		}
		return nil
	}
	if err := t.mkdirAll(path.Dir(dir), o); err != nil {
		return err
	}
	t.entries[dir] = &Entry{Path: dir, Type: Dir, Perm: 0o755, Reason: "parent directory", Origin: Implied}
	return nil
}

// physical rewrites p so that none of its parent components is a symlink
// of the tree, following links the way the guest kernel will.
func (t *Tree) physical(p string) (string, error) {
	for hops := 0; ; hops++ {
		if hops > 40 {
			return "", fmt.Errorf("image: too many symlinks resolving %s", p)
		}
		changed := false
		parts := strings.Split(strings.TrimPrefix(p, "/"), "/")
		cur := "/"
		for i := 0; i < len(parts)-1; i++ {
			cur = path.Join(cur, parts[i])
			e, ok := t.entries[cur]
			if !ok || e.Type != Symlink {
				continue
			}
			target := e.Link
			if !path.IsAbs(target) {
				target = path.Join(path.Dir(cur), target)
			}
			p = path.Join(append([]string{path.Clean(target)}, parts[i+1:]...)...)
			changed = true
			break
		}
		if !changed {
			return p, nil
		}
	}
}

// Lookup returns the entry at a guest path, following the tree's own
// symlinks in parent components (not in the last one).
func (t *Tree) Lookup(p string) (*Entry, bool) {
	pp, err := t.physical(path.Clean(p))
	if err != nil {
		return nil, false
	}
	e, ok := t.entries[pp]
	return e, ok
}

// Entries returns the entries sorted by path; parents sort before
// children.
func (t *Tree) Entries() []*Entry {
	out := make([]*Entry, 0, len(t.entries))
	for _, e := range t.entries {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}

// AddHostTree copies a host directory into the tree at guest, recursing;
// symlinks are kept as links, special files are refused.
func (t *Tree) AddHostTree(host, guest, reason string, o Origin) error {
	info, err := os.Lstat(host)
	if err != nil {
		return fmt.Errorf("reading %s: %w", host, err)
	}
	return t.addHost(host, guest, info, reason, o)
}

func (t *Tree) addHost(host, guest string, info os.FileInfo, reason string, o Origin) error {
	perm := uint32(info.Mode().Perm())
	switch {
	case info.Mode()&os.ModeSymlink != 0:
		target, err := os.Readlink(host)
		if err != nil {
			return fmt.Errorf("reading link %s: %w", host, err)
		}
		return t.Add(Entry{Path: guest, Type: Symlink, Link: target, Reason: reason, Origin: o})
	case info.IsDir():
		if err := t.Add(Entry{Path: guest, Type: Dir, Perm: perm, Reason: reason, Origin: o}); err != nil {
			return err
		}
		ents, err := os.ReadDir(host)
		if err != nil {
			return fmt.Errorf("reading %s: %w", host, err)
		}
		for _, d := range ents {
			ci, err := d.Info()
			if err != nil {
				return fmt.Errorf("reading %s: %w", path.Join(host, d.Name()), err)
			}
			if err := t.addHost(path.Join(host, d.Name()), path.Join(guest, d.Name()), ci, reason, o); err != nil {
				return err
			}
		}
		return nil
	case info.Mode().IsRegular():
		f, err := os.Open(host)
		if err != nil {
			return fmt.Errorf("reading %s: %w", host, err)
		}
		f.Close()
		return t.Add(Entry{Path: guest, Type: File, Perm: perm, Src: host, Reason: reason, Origin: o})
	}
	return fmt.Errorf("%s is %s: only regular files, directories and symlinks go into an image", host, filekind.Of(info.Mode()))
}

// Records converts the tree to manifest file records (without digests,
// which the writer fills as it copies).
func (t *Tree) records() []manifest.File {
	ents := t.Entries()
	out := make([]manifest.File, len(ents))
	for i, e := range ents {
		out[i] = manifest.File{Path: e.Path, Type: e.Type.String(), Mode: e.Perm, Link: e.Link, Reason: e.Reason, Overrides: e.Overrides}
	}
	return out
}
