// Package kernel holds the recipe of hull's tuned kernel as data: the
// config fragment (hull.config, applied on top of `make tinyconfig`) and
// the patches (patches/*.patch, applied in name order to Debian's
// linux-source tree). They are embedded in the hull binary, so
// `hull kernel build` needs no checkout, and their bytes are part of the
// build's cache key. Package kernelbuild does the building; this package
// only carries the files.
package kernel

import (
	"embed"
	"io/fs"
	"path"
	"sort"
)

//go:embed hull.config
var fragment []byte

//go:embed patches/*.patch
var patches embed.FS

// Fragment returns the config fragment (kernel/hull.config).
func Fragment() []byte { return append([]byte(nil), fragment...) }

// Patch is one source patch, in unified diff form for `patch -p1`.
type Patch struct {
	Name string // file name, e.g. "0001-x86-apic-lapic_timer_period-parameter.patch"
	Data []byte
}

// Patches returns the patches in the order they apply.
func Patches() []Patch {
	names, _ := fs.Glob(patches, "patches/*.patch")
	sort.Strings(names)
	out := make([]Patch, 0, len(names))
	for _, n := range names {
		data, err := patches.ReadFile(n)
		if err != nil {
			continue // cannot happen for an embedded file Glob listed
		}
		out = append(out, Patch{Name: path.Base(n), Data: data})
	}
	return out
}
