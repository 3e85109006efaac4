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
)

//go:embed hull.config
var fragment []byte

//go:embed patches/*.patch
var patches embed.FS

// Patches is the patch directory: the *.patch files, applied in name
// order (kernelbuild.ReadPatches reads them).
func Patches() fs.FS {
	sub, err := fs.Sub(patches, "patches")
	if err != nil {
		panic(err) // cannot happen: "patches" is a valid, embedded path
	}
	return sub
}

// Fragment returns the config fragment (kernel/hull.config).
func Fragment() []byte { return append([]byte(nil), fragment...) }
