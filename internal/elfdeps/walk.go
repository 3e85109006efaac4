package elfdeps

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// maxSymlinks matches Linux's MAXSYMLINKS: the kernel gives up with ELOOP
// after following this many symlinks in one lookup.
const maxSymlinks = 40

// link is a symlink met while walking a path.
type link struct {
	path   string // physical location of the symlink itself
	target string // raw target as stored on disk
}

// walked is the outcome of resolving one path inside Root.
type walked struct {
	phys  string      // physical path of the final file
	links []link      // every symlink followed, in the order met
	mode  fs.FileMode // mode of the final file (never a symlink)
}

// HostPath returns where on the build host the file at path p (inside Root)
// lives. It is only meaningful for physical paths: a symlink inside p would be
// followed by the host, possibly out of Root.
func (r *Resolver) HostPath(p string) string {
	return filepath.Join(r.root(), filepath.FromSlash(p))
}

func (r *Resolver) root() string {
	if r.Root == "" {
		return "/"
	}
	return r.Root
}

// walk resolves p (absolute, inside Root) one component at a time, as the
// kernel would if Root were "/". Doing it by hand rather than with
// filepath.EvalSymlinks keeps absolute targets inside Root, makes ".." climb
// the physical parent (not the lexical one), and records every link met so the
// image can recreate it.
func (r *Resolver) walk(p string) (walked, error) {
	var w walked
	pending := splitPath(p)
	cur := "/"
	hops := 0
	for len(pending) > 0 {
		comp := pending[0]
		pending = pending[1:]
		if comp == "." {
			continue
		}
		if comp == ".." {
			cur = parentDir(cur)
			continue
		}
		next := joinRaw(cur, comp)
		fi, err := os.Lstat(r.HostPath(next))
		if err != nil {
			return w, walkError(p, next, err)
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			hops++
			if hops > maxSymlinks {
				return w, &fs.PathError{Op: "resolve", Path: printable(p),
					Err: fmt.Errorf("%w (more than %d symlinks followed; is there a symlink loop at %s?)", syscall.ELOOP, maxSymlinks, printable(next))}
			}
			target, err := os.Readlink(r.HostPath(next))
			if err != nil {
				return w, walkError(p, next, err)
			}
			if target == "" {
				return w, walkError(p, next, syscall.ENOENT)
			}
			w.links = append(w.links, link{path: next, target: target})
			if strings.HasPrefix(target, "/") {
				cur = "/"
			}
			pending = append(splitPath(target), pending...)
			continue
		}
		if len(pending) > 0 && !fi.IsDir() {
			return w, walkError(p, next, syscall.ENOTDIR)
		}
		cur = next
	}
	fi, err := os.Lstat(r.HostPath(cur))
	if err != nil {
		return w, walkError(p, cur, err)
	}
	w.phys = cur
	w.mode = fi.Mode()
	return w, nil
}

// walkError names the path the caller asked for, and where it broke when that
// differs, with the host prefix stripped so messages speak of Root's paths.
func walkError(asked, at string, err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	if at != asked {
		err = fmt.Errorf("%w (at %s)", err, printable(at))
	}
	return &fs.PathError{Op: "resolve", Path: printable(asked), Err: err}
}

// isAbsent reports errors that mean "no file there", which a library search
// treats as "try the next directory".
func isAbsent(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)
}

func splitPath(p string) []string {
	parts := strings.Split(p, "/")
	out := parts[:0]
	for _, s := range parts {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

// joinRaw joins without lexical cleaning: "a/../b" must reach the physical
// parent of a, which only the walker knows.
func joinRaw(dir, name string) string {
	if strings.HasSuffix(dir, "/") {
		return dir + name
	}
	return dir + "/" + name
}

// parentDir is the directory part of p, without cleaning; "/" stays "/".
func parentDir(p string) string {
	i := strings.LastIndexByte(p, '/')
	if i <= 0 {
		return "/"
	}
	return p[:i]
}
