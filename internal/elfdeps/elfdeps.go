package elfdeps

import (
	"debug/elf"
	"errors"
	"fmt"
	"maps"
	"os"
	"path"
	"runtime"
	"slices"
	"strings"

	"github.com/hullvm/hull/internal/filekind"
)

// Kind tells why a File is in the closure.
type Kind int

const (
	KindProgram Kind = iota // the program itself (regular file)
	KindInterp              // the program interpreter named by PT_INTERP (regular file)
	KindLibrary             // a shared object found for a DT_NEEDED name or added with AddLibrary (regular file)
	KindLink                // a symlink met on the way to any of the above (file or directory symlink)
)

func (k Kind) String() string {
	switch k {
	case KindProgram:
		return "program"
	case KindInterp:
		return "interp"
	case KindLibrary:
		return "library"
	case KindLink:
		return "link"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// File is one entry of the closure.
type File struct {
	Path   string // absolute, cleaned path inside Root; its parent directories contain no symlinks (physical location)
	Link   string // for KindLink: the symlink's target exactly as stored on disk; "" otherwise
	Kind   Kind
	Reason string // why the file is needed, for humans
}

// Closure is the set of files a program needs to start.
type Closure struct {
	Program string      // physical path of the program inside Root
	Machine elf.Machine // the program's machine, e.g. elf.EM_X86_64
	Interp  string      // PT_INTERP as written in the program ("" when static)
	Static  bool        // no PT_INTERP and no DT_NEEDED (static and static-PIE both count as static)
	Libc    string      // "glibc" when libc.so.6 is in the closure, "musl" when the interp/libc is musl, "" otherwise
	Threads bool        // some object in the closure imports pthread_create
	Files   []File      // sorted by Path, no duplicates

	// g keeps the loader's view (names already loaded, loading chains) so
	// AddLibrary matches names the way ld.so would at dlopen time.
	g *graph
}

// Resolver computes closures. The zero value resolves against the host's "/".
type Resolver struct {
	Root string // sysroot all paths are interpreted in; "" means "/"
	// LibraryPath lists extra library directories searched after DT_RPATH and
	// before DT_RUNPATH, like LD_LIBRARY_PATH; may be nil.
	LibraryPath []string
}

// node is one loaded ELF object, as ld.so's link_map.
type node struct {
	path    string  // physical path
	display string  // name used in reasons and errors
	origin  string  // what $ORIGIN expands to for this object
	obj     *object // parsed dynamic information
	loader  *node   // object whose DT_NEEDED (or dlopen) brought this one in; nil for the program
}

// graph is the loader state of one closure.
type graph struct {
	r      *Resolver
	main   *node
	byPhys map[string]*node
	byName map[string]*node // requested names, load paths and sonames, as ld.so matches them
	files  map[string]*File
	queue  []*node
	nodes  []*node

	// musl is set when the interpreter is musl's: its loader has its own
	// search rules and answers for libc's reserved names itself.
	musl   bool
	interp *node

	confRead bool
	conf     []string
}

// clone copies the state AddLibrary may change, so a failed call can be
// undone and leave the closure as it was.
func (g *graph) clone() *graph {
	c := *g
	c.byPhys = maps.Clone(g.byPhys)
	c.byName = maps.Clone(g.byName)
	c.files = make(map[string]*File, len(g.files))
	for k, f := range g.files {
		f := *f
		c.files[k] = &f
	}
	c.queue = slices.Clone(g.queue)
	c.nodes = slices.Clone(g.nodes)
	return &c
}

func newGraph(r *Resolver) *graph {
	return &graph{r: r, byPhys: map[string]*node{}, byName: map[string]*node{}, files: map[string]*File{}}
}

// Resolve computes the closure of program: an absolute path inside Root, or
// a path relative to the process's working directory when Root is "/".
func (r *Resolver) Resolve(program string) (*Closure, error) {
	prog, err := r.programPath(program)
	if err != nil {
		return nil, err
	}
	g := newGraph(r)
	w, err := r.walk(prog)
	if err != nil {
		return nil, err
	}
	if !w.mode.IsRegular() {
		return nil, fmt.Errorf("program %s is not a regular file (%s)", printable(prog), filekind.Of(w.mode))
	}
	obj, err := r.readObject(w.phys, prog)
	if err != nil {
		return nil, err
	}
	main := &node{path: w.phys, display: prog, origin: parentDir(w.phys), obj: obj}
	g.main = main
	g.addNode(main, KindProgram, "program")
	g.addLinks(w.links, prog)

	c := &Closure{Program: w.phys, Machine: obj.machine, Interp: obj.interp, g: g}
	if obj.hasInterp {
		if err := g.loadInterp(main); err != nil {
			return nil, err
		}
	}
	c.Static = !obj.hasInterp && len(obj.needed) == 0
	g.queue = append(g.queue, main)
	if err := g.drain(); err != nil {
		return nil, err
	}
	g.fill(c)
	return c, nil
}

// AddLibrary adds a shared object that the program loads at run time without
// DT_NEEDED (e.g. glibc's dlopened NSS modules "libnss_dns.so.2",
// libgcc_s.so.1), with its own DT_NEEDED closure. It searches as a dlopen from
// the C library would: the program's DT_RPATH (unless it has DT_RUNPATH),
// LibraryPath, ld.so.conf directories, then the default directories. The
// reason is recorded on the library itself; a library already in the closure
// keeps its first reason. A miss returns an error wrapping ErrNotFound.
func (r *Resolver) AddLibrary(c *Closure, soname, reason string) error {
	if c.g == nil || c.g.r != r {
		// A closure built elsewhere (or by another Resolver) carries no loader
		// state; rebuild it so names match as they would at run time.
		fresh, err := r.Resolve(c.Program)
		if err != nil {
			return fmt.Errorf("add library %s: %w", printable(soname), err)
		}
		for _, f := range c.Files {
			if _, ok := fresh.g.files[f.Path]; !ok {
				f := f
				fresh.g.files[f.Path] = &f
			}
		}
		c.g = fresh.g
	}
	g := c.g
	saved := g.clone()
	err := g.addLibrary(soname, reason)
	if err != nil {
		*g = *saved
		return err
	}
	g.fill(c)
	return nil
}

func (g *graph) addLibrary(soname, reason string) error {
	caller := &node{display: "dlopen", obj: &object{}, loader: g.main}
	if _, err := g.find(soname, caller, reason); err != nil {
		var miss *MissingLibraryError
		if errors.As(err, &miss) {
			return fmt.Errorf("add library %s (searched %s): %w", printable(soname), printableList(miss.Searched, ", "), ErrNotFound)
		}
		return fmt.Errorf("add library %s: %w", printable(soname), err)
	}
	if err := g.drain(); err != nil {
		return fmt.Errorf("add library %s: %w", printable(soname), err)
	}
	return nil
}

func (r *Resolver) programPath(program string) (string, error) {
	if program == "" {
		return "", errors.New("no program given")
	}
	if strings.HasPrefix(program, "/") {
		return program, nil
	}
	if r.root() != "/" {
		return "", fmt.Errorf("program %s: path must be absolute inside Root %s", printable(program), printable(r.Root))
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("program %s: relative path needs the working directory: %w", printable(program), err)
	}
	return joinRaw(wd, program), nil
}

// loadInterp records the PT_INTERP file. The kernel, not ld.so, opens it, so
// it is not searched for: a missing interpreter is fatal.
func (g *graph) loadInterp(main *node) error {
	interp := main.obj.interp
	p := interp
	if !strings.HasPrefix(p, "/") {
		p = "/" + p // the kernel would use the cwd; "/" is the image's
	}
	w, err := g.r.walk(p)
	if err != nil {
		return fmt.Errorf("program interpreter of %s (PT_INTERP): %w: install the C library the program was built for", printable(main.display), err)
	}
	if !w.mode.IsRegular() {
		return fmt.Errorf("program interpreter %s of %s is not a regular file (%s)", printable(interp), printable(main.display), filekind.Of(w.mode))
	}
	n := g.byPhys[w.phys]
	if n == nil {
		obj, err := g.r.readObject(w.phys, w.phys)
		var notELF *NotELFError
		if errors.As(err, &notELF) {
			// NotELFError speaks of programs and script runtimes, which would
			// mislead here; the kernel calls this a bad ELF interpreter.
			err = &MalformedError{Path: w.phys, Err: errors.New("invalid ELF header: not a program interpreter")}
		}
		if err != nil {
			return fmt.Errorf("program interpreter of %s: %w", printable(main.display), err)
		}
		n = &node{path: w.phys, display: w.phys, origin: parentDir(p), obj: obj}
		g.addNode(n, KindInterp, fmt.Sprintf("program interpreter of %s (PT_INTERP)", printable(main.display)))
	}
	g.addLinks(w.links, printable(interp)+" (PT_INTERP)")
	g.byName[interp] = n
	g.byName[p] = n
	g.interp = n
	g.musl = isMuslLoader(interp)
	return nil
}

// drain loads the DT_NEEDED entries of queued objects breadth first, the
// order ld.so maps dependencies in, which decides which object a later
// duplicate name binds to.
func (g *graph) drain() error {
	for len(g.queue) > 0 {
		n := g.queue[0]
		g.queue = g.queue[1:]
		for _, name := range n.obj.needed {
			reason := fmt.Sprintf("needed by %s (DT_NEEDED %s)", printable(n.display), printable(name))
			if _, err := g.find(name, n, reason); err != nil {
				return err
			}
		}
	}
	return nil
}

// find returns the object ld.so would bind name to when req asks for it,
// loading (and queueing) it if it is new.
func (g *graph) find(name string, req *node, reason string) (*node, error) {
	if name == "" {
		return nil, &MalformedError{Path: req.display, Err: errors.New("empty DT_NEEDED entry")}
	}
	if n := g.byName[name]; n != nil {
		return n, nil
	}
	if g.musl && muslReserved(name) {
		// musl's loader is also its libc and answers for these names
		// without searching.
		g.byName[name] = g.interp
		return g.interp, nil
	}
	expanded := g.expand(name, req.origin)
	if strings.Contains(expanded, "/") {
		p := expanded
		if !strings.HasPrefix(p, "/") {
			p = "/" + p
		}
		n, skipped, err := g.try(p, name, req, reason)
		if err != nil {
			return nil, fmt.Errorf("loading %s for %s: %w", printable(name), printable(req.display), err)
		}
		if n == nil {
			return nil, &MissingLibraryError{Name: name, NeededBy: req.display, Searched: []string{p}, Skipped: skipped}
		}
		return n, nil
	}
	dirs := g.searchDirs(req)
	var skipped []string
	var firstErr error
	for _, dir := range dirs {
		n, sk, err := g.try(joinRaw(dir, name), name, req, reason)
		if err != nil {
			// An unreadable candidate does not stop ld.so, which moves on and
			// reports the failure only if nothing else is found.
			var arch *ArchError
			var bad *MalformedError
			if errors.As(err, &arch) || errors.As(err, &bad) {
				return nil, fmt.Errorf("loading %s for %s: %w", printable(name), printable(req.display), err)
			}
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		skipped = append(skipped, sk...)
		if n != nil {
			return n, nil
		}
	}
	if firstErr != nil {
		return nil, fmt.Errorf("library %s needed by %s: %w", printable(name), printable(req.display), firstErr)
	}
	return nil, &MissingLibraryError{Name: name, NeededBy: req.display, Searched: dirs, Skipped: skipped}
}

// try loads the candidate at p. It returns (nil, skipped, nil) when the
// candidate is absent or of the wrong class or machine, which means "keep
// searching".
func (g *graph) try(p, name string, req *node, reason string) (*node, []string, error) {
	w, err := g.r.walk(p)
	if err != nil {
		if isAbsent(err) {
			return nil, nil, nil
		}
		return nil, nil, err
	}
	if !w.mode.IsRegular() {
		return nil, nil, nil
	}
	n := g.byPhys[w.phys]
	if n == nil {
		obj, err := g.r.readObject(w.phys, w.phys)
		if err != nil {
			var notELF *NotELFError
			if errors.As(err, &notELF) {
				// ld.so stops here too ("invalid ELF header"); say it in
				// library terms rather than the program-oriented NotELFError.
				return nil, nil, &MalformedError{Path: w.phys, Err: errors.New("invalid ELF header: not a shared object")}
			}
			var arch *ArchError
			if errors.As(err, &arch) && !arch.wrongType() {
				return nil, []string{fmt.Sprintf("%s (%s %v)", printable(p), className(arch.Class), arch.Got)}, nil
			}
			return nil, nil, err
		}
		n = &node{path: w.phys, display: w.phys, origin: parentDir(p), obj: obj, loader: req}
		g.addNode(n, KindLibrary, reason)
		g.queue = append(g.queue, n)
	}
	g.addLinks(w.links, name)
	g.byName[name] = n
	g.byName[p] = n
	return n, nil, nil
}

func (g *graph) addNode(n *node, kind Kind, reason string) {
	g.byPhys[n.path] = n
	g.nodes = append(g.nodes, n)
	if n.obj.soname != "" {
		if _, taken := g.byName[n.obj.soname]; !taken {
			g.byName[n.obj.soname] = n
		}
	}
	if f, ok := g.files[n.path]; ok {
		// The same file reached in two roles keeps the most specific one.
		if kind < f.Kind {
			f.Kind, f.Reason = kind, reason
		}
		return
	}
	g.files[n.path] = &File{Path: n.path, Kind: kind, Reason: reason}
}

func (g *graph) addLinks(links []link, wanted string) {
	for _, l := range links {
		if _, ok := g.files[l.path]; ok {
			continue
		}
		g.files[l.path] = &File{Path: l.path, Link: l.target, Kind: KindLink,
			Reason: fmt.Sprintf("symlink to %s (on the way to %s)", printable(l.target), printable(wanted))}
	}
}

// fill publishes the graph into c's exported fields.
func (g *graph) fill(c *Closure) {
	// A fresh slice: callers may still hold the previous one.
	c.Files = make([]File, 0, len(g.files))
	for _, f := range g.files {
		c.Files = append(c.Files, *f)
	}
	slices.SortFunc(c.Files, func(a, b File) int { return strings.Compare(a.Path, b.Path) })
	c.Threads = false
	glibc, musl := false, false
	for _, n := range g.nodes {
		c.Threads = c.Threads || n.obj.threads
		// glibc counts only as a file actually in the closure: under musl's
		// loader a DT_NEEDED libc.so.6 is answered by musl itself.
		if n.obj.soname == "libc.so.6" || path.Base(n.path) == "libc.so.6" {
			glibc = true
		}
		for _, name := range append([]string{n.obj.soname, path.Base(n.path)}, n.obj.needed...) {
			if strings.HasPrefix(name, "libc.musl-") || strings.HasPrefix(name, "ld-musl-") {
				musl = true
			}
		}
	}
	switch {
	case isMuslLoader(c.Interp):
		c.Libc = "musl"
	case glibc:
		c.Libc = "glibc"
	case musl:
		c.Libc = "musl"
	default:
		c.Libc = ""
	}
}

// abi describes the only target hull builds for: the host.
type abi struct {
	machine  elf.Machine
	triplet  string // Debian multiarch tuple
	platform string // what $PLATFORM expands to
}

func hostABI() abi {
	if runtime.GOARCH == "arm64" {
		return abi{machine: elf.EM_AARCH64, triplet: "aarch64-linux-gnu", platform: "aarch64"}
	}
	return abi{machine: elf.EM_X86_64, triplet: "x86_64-linux-gnu", platform: "x86_64"}
}
