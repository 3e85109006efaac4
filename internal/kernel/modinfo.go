package kernel

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
)

// modinfo is what hull needs from a module's .modinfo section: a list of
// NUL-separated key=value strings written by modpost.
type modinfo struct {
	Name     string   // name=, normalised; "" when absent
	Depends  []string // depends=, normalised, sorted, deduplicated
	Vermagic string   // vermagic=, e.g. "6.1.0-57-cloud-amd64 SMP preempt mod_unload modversions"
}

// maxModuleNameLen is the kernel's MODULE_NAME_LEN (64) less the NUL and
// the room it keeps for a suffix; longer names cannot be real modules.
const maxModuleNameLen = 56

// normModuleName maps a module or file name to the kernel's spelling:
// '-' and '_' are the same to modprobe, and the kernel uses '_'.
func normModuleName(s string) string { return strings.ReplaceAll(s, "-", "_") }

// validModuleName reports whether a normalised name is safe to use as a
// file name in a bundle: module names come from KBUILD_MODNAME, which is
// letters, digits and '_' only, so anything else (such as "../x") is junk.
func validModuleName(s string) bool {
	if s == "" || len(s) > maxModuleNameLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '_' && (c < '0' || c > '9') && (c < 'a' || c > 'z') && (c < 'A' || c > 'Z') {
			return false
		}
	}
	return true
}

// moduleFileSuffixes are the module file forms found in kernel packages:
// plain, and the compressed ones newer Debian kernels ship. The order
// matters: the compressed forms must be tried before ".ko".
var moduleFileSuffixes = []string{".ko.xz", ".ko.zst", ".ko.gz", ".ko"}

// moduleFileName splits a module file's base name into its normalised
// module name and compression suffix ("" for plain .ko).
func moduleFileName(p string) (name, comp string, ok bool) {
	base := path.Base(p)
	for _, suf := range moduleFileSuffixes {
		if stem, found := strings.CutSuffix(base, suf); found {
			return normModuleName(stem), strings.TrimPrefix(suf, ".ko"), true
		}
	}
	return "", "", false
}

// parseModinfo reads the .modinfo section of an ELF kernel module held in
// memory. It never panics: debug/elf has had panics on hostile input, and a
// .deb is input.
func parseModinfo(data []byte) (mi modinfo, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("malformed ELF file (%v)", r)
		}
	}()
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		return modinfo{}, fmt.Errorf("not an ELF file: %w", err)
	}
	sec := f.Section(".modinfo")
	if sec == nil {
		return modinfo{}, errors.New("no .modinfo section (not a kernel module?)")
	}
	if sec.Type == elf.SHT_NOBITS || sec.Flags&elf.SHF_COMPRESSED != 0 {
		return modinfo{}, errors.New(".modinfo section has no plain data")
	}
	// Slice the bytes ourselves rather than sec.Data(): no allocation sized
	// by an untrusted header, and an explicit bounds check.
	off, size := sec.Offset, sec.FileSize
	if off > uint64(len(data)) || size > uint64(len(data))-off {
		return modinfo{}, errors.New(".modinfo section lies outside the file")
	}
	return parseModinfoData(data[off : off+size])
}

// parseModinfoData decodes the NUL-separated key=value list. The first
// name=, depends= and vermagic= win, as in the kernel's get_modinfo.
func parseModinfoData(b []byte) (modinfo, error) {
	var mi modinfo
	var seenName, seenDeps, seenVermagic bool
	for len(b) > 0 {
		var field []byte
		if i := bytes.IndexByte(b, 0); i >= 0 {
			field, b = b[:i], b[i+1:]
		} else {
			field, b = b, nil
		}
		key, val, ok := bytes.Cut(field, []byte("="))
		if !ok {
			continue // padding between entries is NUL runs
		}
		switch string(key) {
		case "name":
			if seenName {
				continue
			}
			seenName = true
			mi.Name = normModuleName(string(val))
			if !validModuleName(mi.Name) {
				return modinfo{}, fmt.Errorf("bad module name %q in .modinfo", val)
			}
		case "depends":
			if seenDeps {
				continue
			}
			seenDeps = true
			deps, err := parseDepends(string(val))
			if err != nil {
				return modinfo{}, err
			}
			mi.Depends = deps
		case "vermagic":
			if seenVermagic {
				continue
			}
			seenVermagic = true
			mi.Vermagic = string(val)
		}
	}
	if mi.Depends == nil {
		mi.Depends = []string{}
	}
	return mi, nil
}

func parseDepends(s string) ([]string, error) {
	deps := []string{}
	for d := range strings.SplitSeq(s, ",") {
		d = normModuleName(strings.TrimSpace(d))
		if d == "" {
			continue
		}
		if !validModuleName(d) {
			return nil, fmt.Errorf("bad dependency name %q in .modinfo", d)
		}
		deps = append(deps, d)
	}
	slices.Sort(deps)
	return slices.Compact(deps), nil
}

// loadOrder sorts modules so each comes after all of its dependencies.
// Among modules that are ready at the same time the smallest name goes
// first, which makes the order a function of the dependency graph alone.
// Dependencies in skip (built into the kernel) need no loading.
func loadOrder(mods map[string]Module, skip map[string]bool) ([]Module, error) {
	indeg := make(map[string]int, len(mods))
	users := make(map[string][]string)
	for name, m := range mods {
		indeg[name] += 0
		for _, d := range m.Depends {
			if _, ok := mods[d]; !ok {
				if skip[d] {
					continue
				}
				return nil, fmt.Errorf("module %s depends on %s, which is not in the bundle", name, d)
			}
			indeg[name]++
			users[d] = append(users[d], name)
		}
	}
	var ready []string
	for name, n := range indeg {
		if n == 0 {
			ready = append(ready, name)
		}
	}
	out := make([]Module, 0, len(mods))
	for len(ready) > 0 {
		slices.Sort(ready)
		name := ready[0]
		ready = ready[1:]
		out = append(out, mods[name])
		for _, u := range users[name] {
			indeg[u]--
			if indeg[u] == 0 {
				ready = append(ready, u)
			}
		}
	}
	if len(out) != len(mods) {
		var cyc []string
		for name, n := range indeg {
			if n > 0 {
				cyc = append(cyc, name)
			}
		}
		slices.Sort(cyc)
		return nil, fmt.Errorf("module dependency cycle among %s", strings.Join(cyc, ", "))
	}
	return out, nil
}
