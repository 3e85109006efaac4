package traditional

import (
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/hullvm/hull/internal/elfdeps"
	"github.com/hullvm/hull/internal/initramfs"
	"github.com/hullvm/hull/internal/kernel"
)

// Stage1File is one file of the stage-1 initramfs, for the report.
type Stage1File struct {
	Path string
	Size int64
}

// modulesDir is where stage 1 keeps modules: the physical path of
// /lib/modules on a merged-/usr system like bookworm, where /lib is a
// symlink to usr/lib.
const modulesDir = "/usr/lib/modules"

// WriteStage1 writes the stage-1 initramfs (uncompressed newc) to w: the
// init script, the tools it runs with their shared libraries from the
// root at rootDir, and the bundle's modules in load order. It returns
// the regular files it wrote.
func WriteStage1(w io.Writer, rootDir string, b *kernel.Bundle) ([]Stage1File, error) {
	type entry struct {
		path, link, src string
		body            string
		mode            uint32
		size            int64
	}
	var entries []entry
	dirs := map[string]bool{"/dev": true, "/proc": true, "/sys": true, "/root": true, modulesDir: true}
	seen := map[string]bool{}
	r := &elfdeps.Resolver{Root: rootDir}
	for _, tool := range stage1Tools {
		c, err := r.Resolve(tool)
		if err != nil {
			return nil, fmt.Errorf("stage 1: %s in the traditional root: %w", tool, err)
		}
		for _, f := range c.Files {
			if seen[f.Path] {
				continue
			}
			seen[f.Path] = true
			host := filepath.Join(rootDir, f.Path)
			if f.Kind == elfdeps.KindLink {
				entries = append(entries, entry{path: f.Path, link: f.Link})
				continue
			}
			st, err := os.Stat(host)
			if err != nil {
				return nil, fmt.Errorf("stage 1: %w", err)
			}
			entries = append(entries, entry{path: f.Path, src: host, mode: uint32(st.Mode().Perm()), size: st.Size()})
		}
	}
	var order strings.Builder
	for _, m := range b.Modules {
		st, err := os.Stat(b.ModulePath(m))
		if err != nil {
			return nil, fmt.Errorf("stage 1: module %s: %w", m.Name, err)
		}
		rel := path.Join(b.Release, path.Base(m.File))
		fmt.Fprintln(&order, rel)
		entries = append(entries, entry{path: modulesDir + "/" + rel, src: b.ModulePath(m), mode: 0o644, size: st.Size()})
	}
	entries = append(entries,
		entry{path: modulesDir + "/load-order", body: order.String(), mode: 0o644, size: int64(order.Len())},
		entry{path: "/init", body: stage1Script, mode: 0o755, size: int64(len(stage1Script))})
	for _, e := range entries {
		for d := path.Dir(e.path); d != "/"; d = path.Dir(d) {
			dirs[d] = true
		}
	}
	// A directory that is a symlink in the closure (/bin -> usr/bin) is
	// written as the link.
	for _, e := range entries {
		if e.link != "" {
			delete(dirs, e.path)
		}
	}
	dirList := make([]string, 0, len(dirs))
	for d := range dirs {
		dirList = append(dirList, d)
	}
	slices.Sort(dirList)
	slices.SortFunc(entries, func(a, b entry) int { return strings.Compare(a.path, b.path) })

	cw := initramfs.NewWriter(w)
	for _, d := range dirList {
		if err := cw.Dir(d, 0o755); err != nil {
			return nil, err
		}
	}
	var files []Stage1File
	for _, e := range entries {
		switch {
		case e.link != "":
			if err := cw.Symlink(e.path, e.link); err != nil {
				return nil, err
			}
			continue
		case e.src != "":
			f, err := os.Open(e.src)
			if err != nil {
				return nil, err
			}
			err = cw.File(e.path, e.mode, e.size, f)
			f.Close()
			if err != nil {
				return nil, err
			}
		default:
			if err := cw.File(e.path, e.mode, e.size, strings.NewReader(e.body)); err != nil {
				return nil, err
			}
		}
		files = append(files, Stage1File{Path: e.path, Size: e.size})
	}
	return files, cw.Close()
}
