package elfdeps

import (
	"io"
	"os"
	"path"
	"strings"
)

const (
	ldSoConf        = "/etc/ld.so.conf"
	maxIncludeDepth = 16
	maxConfSize     = 1 << 20
)

// defaultDirs are ld.so's built-in directories, searched last.
func defaultDirs() []string {
	t := hostABI().triplet
	return []string{"/lib/" + t, "/usr/lib/" + t, "/lib64", "/usr/lib64", "/lib", "/usr/lib"}
}

// searchDirs lists, in ld.so's order, the directories searched for a
// slash-free name requested by req.
func (g *graph) searchDirs(req *node) []string {
	if g.musl {
		return g.muslSearchDirs(req)
	}
	var dirs []string
	add := func(entries []string, origin string) {
		for _, e := range entries {
			for _, d := range strings.Split(g.expand(e, origin), ":") {
				// An empty element means ld.so's working directory, which is
				// unknowable here; skipping it is the safe reading.
				if d != "" {
					dirs = append(dirs, d)
				}
			}
		}
	}
	if len(req.obj.runpath) == 0 {
		// DT_RPATH of the requester and of every object up the chain that
		// loaded it, ending with the program. Objects with DT_RUNPATH have
		// had their DT_RPATH dropped at parse time, as ld.so does.
		sawMain := false
		for l := req; l != nil; l = l.loader {
			add(l.obj.rpath, l.origin)
			sawMain = sawMain || l == g.main
		}
		if !sawMain && g.main != nil {
			add(g.main.obj.rpath, g.main.origin)
		}
	}
	mainOrigin := ""
	if g.main != nil {
		mainOrigin = g.main.origin
	}
	add(g.r.LibraryPath, mainOrigin)
	add(req.obj.runpath, req.origin)

	nodeflib := req.obj.nodeflib()
	isDefault := map[string]bool{}
	for _, d := range defaultDirs() {
		isDefault[d] = true
	}
	for _, d := range g.confDirs() {
		// DF_1_NODEFLIB also hides ld.so.cache entries living in default dirs.
		if !nodeflib || !isDefault[d] {
			dirs = append(dirs, d)
		}
	}
	if !nodeflib {
		dirs = append(dirs, defaultDirs()...)
	}
	return dedupe(dirs)
}

// muslSearchDirs follows musl's ldso: LD_LIBRARY_PATH first, then the
// run path (DT_RUNPATH, else DT_RPATH) of the requester and of every object up
// its loading chain, then /etc/ld-musl-ARCH.path (or musl's built-in list).
// musl never reads ld.so.conf.
func (g *graph) muslSearchDirs(req *node) []string {
	var dirs []string
	add := func(entries []string, origin string) {
		for _, e := range entries {
			for _, d := range strings.Split(g.expand(e, origin), ":") {
				if d != "" {
					dirs = append(dirs, d)
				}
			}
		}
	}
	add(g.r.LibraryPath, g.main.origin)
	for l := req; l != nil; l = l.loader {
		if len(l.obj.runpath) > 0 {
			add(l.obj.runpath, l.origin)
		} else {
			add(l.obj.rpath, l.origin)
		}
	}
	return dedupe(append(dirs, g.muslSysPath()...))
}

// muslSysPath reads the file musl derives from its loader's location: two
// levels up from the loader as named by PT_INTERP, then etc/ld-musl-ARCH.path.
func (g *graph) muslSysPath() []string {
	if !g.confRead {
		g.confRead = true
		g.conf = []string{"/lib", "/usr/local/lib", "/usr/lib"}
		prefix := parentDir(parentDir(g.interpPath()))
		if prefix == "/" {
			prefix = ""
		}
		file := prefix + "/etc/ld-musl-" + hostABI().platform + ".path"
		if w, err := g.r.walk(file); err == nil && w.mode.IsRegular() {
			if data, err := readLimited(g.r.HostPath(w.phys), maxConfSize); err == nil {
				g.conf = strings.FieldsFunc(string(data), func(r rune) bool { return r == '\n' || r == ':' })
			}
		}
	}
	return g.conf
}

func (g *graph) interpPath() string {
	if g.main == nil || !strings.HasPrefix(g.main.obj.interp, "/") {
		return "/"
	}
	return g.main.obj.interp
}

// isMuslLoader reports whether a PT_INTERP names musl's dynamic loader.
func isMuslLoader(interp string) bool {
	return strings.HasPrefix(path.Base(interp), "ld-musl-")
}

// muslReserved reports names musl's loader resolves to itself: libc and the
// libraries glibc splits out of it (libpthread.so.0, libm.so.6, ...).
func muslReserved(name string) bool {
	base, _, ok := strings.Cut(name, ".")
	if !ok || !strings.HasPrefix(base, "lib") || strings.Contains(name, "/") {
		return false
	}
	switch strings.TrimPrefix(base, "lib") {
	case "c", "pthread", "rt", "m", "dl", "util", "xnet":
		return true
	}
	return false
}

func dedupe(dirs []string) []string {
	seen := map[string]bool{}
	out := dirs[:0]
	for _, d := range dirs {
		if !seen[d] {
			seen[d] = true
			out = append(out, d)
		}
	}
	return out
}

// expand substitutes ld.so's dynamic string tokens.
func (g *graph) expand(s, origin string) string {
	return expandDST(s, origin, hostABI())
}

func expandDST(s, origin string, a abi) string {
	if !strings.Contains(s, "$") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		if s[i] != '$' {
			b.WriteByte(s[i])
			i++
			continue
		}
		name, n := dstName(s[i+1:])
		switch name {
		case "ORIGIN":
			b.WriteString(origin)
		case "LIB":
			b.WriteString("lib/" + a.triplet)
		case "PLATFORM":
			b.WriteString(a.platform)
		default:
			b.WriteByte('$')
			i++
			continue
		}
		i += 1 + n
	}
	return b.String()
}

// dstName recognises a token after '$': "{NAME}" anywhere, or a bare NAME
// followed by the end or '/', as glibc's is_dst does.
func dstName(s string) (string, int) {
	for _, name := range []string{"ORIGIN", "LIB", "PLATFORM"} {
		if strings.HasPrefix(s, "{"+name+"}") {
			return name, len(name) + 2
		}
		if strings.HasPrefix(s, name) && (len(s) == len(name) || s[len(name)] == '/' || s[len(name)] == ':') {
			return name, len(name)
		}
	}
	return "", 0
}

// confDirs returns the directories named by Root's /etc/ld.so.conf, read once.
func (g *graph) confDirs() []string {
	if !g.confRead {
		g.confRead = true
		g.conf = g.r.readLdSoConf()
	}
	return g.conf
}

// readLdSoConf follows ldconfig's reading of ld.so.conf: one directory per
// line, '#' comments, "include PATTERN..." with globs (relative patterns are
// relative to the including file's directory), "hwcap" lines ignored.
// ldconfig only warns about unreadable files, so they are skipped here too.
func (r *Resolver) readLdSoConf() []string {
	var dirs []string
	seenFile := map[string]bool{}
	var parse func(file string, depth int)
	parse = func(file string, depth int) {
		if depth > maxIncludeDepth {
			return
		}
		w, err := r.walk(file)
		if err != nil || !w.mode.IsRegular() || seenFile[w.phys] {
			return
		}
		seenFile[w.phys] = true
		data, err := readLimited(r.HostPath(w.phys), maxConfSize)
		if err != nil {
			return
		}
		for _, line := range strings.Split(string(data), "\n") {
			if i := strings.IndexByte(line, '#'); i >= 0 {
				line = line[:i]
			}
			line = strings.TrimSpace(line)
			fields := strings.Fields(line)
			if len(fields) == 0 {
				continue
			}
			switch {
			case strings.EqualFold(fields[0], "include") && len(fields) > 1:
				for _, pat := range fields[1:] {
					if !strings.HasPrefix(pat, "/") {
						pat = joinRaw(parentDir(file), pat)
					}
					for _, m := range r.glob(pat) {
						parse(m, depth+1)
					}
				}
			case strings.EqualFold(fields[0], "hwcap") && len(fields) > 1:
			default:
				d := strings.TrimRight(line, "/")
				if d == "" {
					d = "/"
				}
				dirs = append(dirs, d)
			}
		}
	}
	parse(ldSoConf, 0)
	return dedupe(dirs)
}

func readLimited(p string, limit int64) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, limit))
}

// glob expands pattern inside Root. filepath.Glob cannot be used: it would
// follow absolute symlinks out of Root.
func (r *Resolver) glob(pattern string) []string {
	cur := []string{"/"}
	for _, comp := range splitPath(pattern) {
		var next []string
		if !strings.ContainsAny(comp, `*?[\`) {
			for _, d := range cur {
				next = append(next, joinRaw(d, comp))
			}
			cur = next
			continue
		}
		for _, d := range cur {
			w, err := r.walk(d)
			if err != nil || !w.mode.IsDir() {
				continue
			}
			entries, err := os.ReadDir(r.HostPath(w.phys))
			if err != nil {
				continue
			}
			for _, e := range entries { // ReadDir sorts, as glob(3) does
				name := e.Name()
				if strings.HasPrefix(name, ".") && !strings.HasPrefix(comp, ".") {
					continue
				}
				if ok, _ := path.Match(comp, name); ok {
					next = append(next, joinRaw(d, name))
				}
			}
		}
		cur = next
	}
	return cur
}
