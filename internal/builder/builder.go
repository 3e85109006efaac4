// Package builder turns a validated spec into an image: it resolves the
// program's ELF closure, adds what glibc programs load without saying so,
// generates the few /etc files a program expects, adds the user's declared
// files, and writes the result into the image store.
//
// It never executes the program or its loader: everything it learns about
// the program comes from parsing ELF. It adds nothing the program has not
// been shown to need or the user has not declared; each entry carries the
// reason it is there.
package builder

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/hullvm/hull/internal/elfdeps"
	"github.com/hullvm/hull/internal/image"
	"github.com/hullvm/hull/internal/initramfs"
	"github.com/hullvm/hull/internal/kernel"
	"github.com/hullvm/hull/internal/manifest"
	"github.com/hullvm/hull/internal/spec"
)

// Options are the inputs of a build.
type Options struct {
	Spec *spec.Spec // normalized and validated
	// Kernel is the bundle to build for; when nil it is looked up in
	// Kernels by Spec.Kernel after the program has been checked, so a bad
	// program is reported before a missing kernel.
	Kernel  *kernel.Bundle
	Kernels *kernel.Store
	Init    string // host path of the static hull-init binary
	Store   *image.Store
	Codec   initramfs.Codec
}

// Result describes a stored image.
type Result struct {
	Ref      *image.Ref
	Manifest *manifest.Manifest
	// Warnings are things the user should know that did not stop the
	// build (e.g. no CA bundle on the host).
	Warnings []string
}

// Build assembles and stores the image. On error nothing is stored.
func Build(ctx context.Context, o Options) (*Result, error) {
	plan, err := Plan(o)
	if err != nil {
		return nil, err
	}
	codec := o.Codec
	if codec == "" {
		codec = initramfs.Zstd
	}
	txn, err := o.Store.Begin()
	if err != nil {
		return nil, err
	}
	defer txn.Abort()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	disk, err := os.Create(txn.AppDiskPath())
	if err != nil {
		return nil, err
	}
	scratch, err := txn.TempDir()
	if err != nil {
		disk.Close()
		return nil, err
	}
	records, err := image.WriteAppDisk(disk, plan.Tree, scratch)
	if cerr := disk.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("writing image %s: %w", o.Spec.Name, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	plan.Manifest.Files = records
	digest, size, err := fileDigest(txn.AppDiskPath())
	if err != nil {
		return nil, err
	}
	plan.Manifest.AppDisk = manifest.AppDisk{FS: "erofs", Size: size, SHA256: digest}
	sys, err := os.Create(txn.SystemPath())
	if err != nil {
		return nil, err
	}
	err = image.WriteSystem(sys, image.SystemParts{Init: o.Init, Modules: plan.Modules, Manifest: plan.Manifest, Codec: codec})
	if cerr := sys.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("writing image %s: %w", o.Spec.Name, err)
	}
	ref, err := txn.Commit(o.Spec.Name, codec, plan.Manifest)
	if err != nil {
		return nil, fmt.Errorf("storing image %s: %w", o.Spec.Name, err)
	}
	return &Result{Ref: ref, Manifest: plan.Manifest, Warnings: plan.Warnings}, nil
}

func fileDigest(p string) (string, int64, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, fmt.Errorf("hashing %s: %w", p, err)
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// PlanResult is the image before it is written.
type PlanResult struct {
	Tree     *image.Tree
	Manifest *manifest.Manifest
	Modules  []image.Module
	Closure  *elfdeps.Closure
	Warnings []string
}

// Plan decides the image's content without writing anything.
func Plan(o Options) (*PlanResult, error) {
	s := o.Spec
	r := &elfdeps.Resolver{Root: s.Sysroot}
	prog, err := programInRoot(s.Program, s.Sysroot)
	if err != nil {
		return nil, err
	}
	c, err := r.Resolve(prog)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(o.Init); err != nil {
		return nil, fmt.Errorf("hull-init not found at %s (build it with `make build` or set HULL_INIT): %w", o.Init, err)
	}
	if o.Kernel == nil {
		if o.Kernels == nil {
			return nil, errors.New("no kernel bundle given")
		}
		if o.Kernel, err = o.Kernels.Get(s.Kernel); err != nil {
			return nil, err
		}
		// The modules are copied into the image from the stored bundle:
		// one that no longer matches its digests must not seed an image
		// (the runner re-checks the bundle, not modules already copied).
		if err := o.Kernel.Verify(); err != nil {
			return nil, fmt.Errorf("kernel %s: %w", o.Kernel.Name, err)
		}
	}
	p := &PlanResult{Tree: image.NewTree(), Closure: c}
	if c.Libc == "glibc" {
		if err := addGlibcExtras(r, c); err != nil {
			return nil, err
		}
	}
	reloc := newRelocation(c)
	for _, f := range c.Files {
		e := image.Entry{Path: reloc.guest(f.Path), Reason: reloc.reason(f.Reason), Origin: image.Closure}
		if f.Kind == elfdeps.KindLink {
			e.Type, e.Link = image.Symlink, reloc.link(f.Link)
		} else {
			host := r.HostPath(f.Path)
			st, err := os.Stat(host)
			if err != nil {
				return nil, fmt.Errorf("reading %s: %w", host, err)
			}
			e.Type, e.Src, e.Perm = image.File, host, uint32(st.Mode().Perm())
		}
		if err := p.Tree.Add(e); err != nil {
			return nil, err
		}
	}
	warn, err := addGenerated(p.Tree, s, c)
	if err != nil {
		return nil, err
	}
	p.Warnings = append(p.Warnings, warn...)
	for i, m := range s.Files {
		reason := fmt.Sprintf("declared: files[%d] from %s", i, m.Host)
		if err := addUserFile(p.Tree, m, reason, false); err != nil {
			return nil, fmt.Errorf("files[%d]: %w", i, err)
		}
	}
	for i, m := range s.Dirs {
		reason := fmt.Sprintf("declared: dirs[%d] from %s", i, m.Host)
		if err := addUserFile(p.Tree, m, reason, true); err != nil {
			return nil, fmt.Errorf("dirs[%d]: %w", i, err)
		}
	}
	if err := checkMountPoints(p.Tree); err != nil {
		return nil, err
	}
	if e, ok := p.Tree.Lookup(s.Cwd); !ok || e.Type != image.Dir {
		if !ok {
			if err := p.Tree.Add(image.Entry{Path: s.Cwd, Type: image.Dir, Perm: 0o755, Reason: "working directory (cwd)", Origin: image.Generated}); err != nil {
				return nil, err
			}
		} else {
			return nil, fmt.Errorf("cwd %s is a %s in the image, not a directory", s.Cwd, e.Type)
		}
	}
	if p.Modules, err = modulesFor(o.Kernel); err != nil {
		return nil, err
	}
	p.Manifest = newManifest(s, reloc.guest(prog), o.Kernel)
	return p, nil
}

// systemDirs hold the distribution's files; a program and libraries
// there keep their paths in the image.
var systemDirs = []string{"/usr/", "/bin/", "/sbin/", "/lib/", "/lib32/", "/lib64/", "/libx32/", "/opt/", "/etc/"}

func inSystemDir(p string) bool {
	for _, d := range systemDirs {
		if strings.HasPrefix(p, d) || p == strings.TrimSuffix(d, "/") {
			return true
		}
	}
	return false
}

// relocation moves a program that lives outside the system directories
// (./server, /tmp/build/bin/app) under /app in the image, keeping the
// layout around it ($ORIGIN/../lib still works). The image then does not
// depend on where it was built, and user paths such as /tmp or /home
// never collide with the guest's own mount points.
type relocation struct {
	from string // host directory; "" means no relocation
}

// AppDir is where programs from outside the system directories go.
const AppDir = "/app"

func newRelocation(c *elfdeps.Closure) relocation {
	var outside []string
	for _, f := range c.Files {
		if !inSystemDir(f.Path) {
			outside = append(outside, f.Path)
		}
	}
	if len(outside) == 0 {
		return relocation{}
	}
	common := path.Dir(outside[0])
	for _, p := range outside[1:] {
		for common != "/" && !strings.HasPrefix(p, common+"/") {
			common = path.Dir(common)
		}
	}
	return relocation{from: common}
}

func (r relocation) guest(p string) string {
	if r.from == "" || inSystemDir(p) {
		return p
	}
	if r.from == "/" {
		return path.Join(AppDir, p)
	}
	if rest, ok := strings.CutPrefix(p, r.from); ok && (rest == "" || rest[0] == '/') {
		return path.Join(AppDir, rest)
	}
	return p
}

// reason rewrites host paths of the moved tree inside a reason text, so
// the manifest (and the image digest) does not depend on the build dir.
func (r relocation) reason(s string) string {
	if r.from == "" {
		return s
	}
	if r.from == "/" {
		return s
	}
	return strings.ReplaceAll(s, r.from+"/", AppDir+"/")
}

// link rewrites absolute symlink targets that point into the moved tree.
func (r relocation) link(target string) string {
	if !path.IsAbs(target) {
		return target
	}
	return r.guest(target)
}

// programInRoot maps the host program path into the sysroot's namespace.
func programInRoot(program, root string) (string, error) {
	abs, err := filepath.Abs(program)
	if err != nil {
		return "", fmt.Errorf("program %s: %w", program, err)
	}
	if root == "" || root == "/" {
		return abs, nil
	}
	rel, err := filepath.Rel(root, abs)
	if err != nil || strings.HasPrefix(rel, "..") {
		return "", fmt.Errorf("program %s is outside the sysroot %s", program, root)
	}
	return "/" + filepath.ToSlash(rel), nil
}

// addGlibcExtras adds the shared objects glibc opens at run time (dlopen)
// which no DT_NEEDED names: name service modules, the resolver library,
// and libgcc_s, which glibc loads to unwind a cancelled thread.
func addGlibcExtras(r *elfdeps.Resolver, c *elfdeps.Closure) error {
	extras := []struct{ soname, why string }{
		{"libnss_files.so.2", "glibc loads it at run time for /etc/hosts, passwd and group lookups (nsswitch: files)"},
		{"libnss_dns.so.2", "glibc loads it at run time for DNS lookups (nsswitch: dns)"},
		{"libresolv.so.2", "glibc's DNS resolver library, used by name lookups"},
	}
	if c.Threads {
		extras = append(extras, struct{ soname, why string }{
			"libgcc_s.so.1", "glibc loads it to unwind threads on pthread_cancel/pthread_exit (the program uses threads)",
		})
	}
	for _, x := range extras {
		if err := r.AddLibrary(c, x.soname, x.why); err != nil && !errors.Is(err, elfdeps.ErrNotFound) {
			return fmt.Errorf("adding %s: %w", x.soname, err)
		}
	}
	return nil
}

func addUserFile(t *image.Tree, m spec.Mount, reason string, wantDir bool) error {
	st, err := os.Stat(m.Host)
	if err != nil {
		return fmt.Errorf("host path %s: %w", m.Host, err)
	}
	if wantDir && !st.IsDir() {
		return fmt.Errorf("host path %s is not a directory (use files: for single files)", m.Host)
	}
	if !wantDir && st.IsDir() {
		return fmt.Errorf("host path %s is a directory (use dirs: for trees)", m.Host)
	}
	return t.AddHostTree(m.Host, path.Clean(m.Guest), reason, image.User)
}

// mountPoints are the directories the init mounts over at boot; a user
// file there would be hidden, so it is refused.
var mountPoints = []string{"/proc", "/dev", "/tmp"}

func checkMountPoints(t *image.Tree) error {
	for _, mp := range mountPoints {
		e, ok := t.Lookup(mp)
		if ok && e.Type != image.Dir {
			return fmt.Errorf("%s is a mount point the init creates at boot; it cannot be a %s (%s)", mp, e.Type, e.Reason)
		}
		for _, x := range t.Entries() {
			if strings.HasPrefix(x.Path, mp+"/") {
				return fmt.Errorf("%s would be hidden by the %s mount at boot (%s)", x.Path, mp, x.Reason)
			}
		}
	}
	return nil
}

// moduleWhy says why the init loads each of the modules hull asks for.
var moduleWhy = map[string]string{
	"virtio_mmio":    "virtio devices on the microvm bus",
	"virtio_console": "control, stdout and stderr ports",
	"virtio_net":     "network interface",
	"virtio_rng":     "entropy from the host",
	"virtio_blk":     "the app disk",
	"erofs":          "the app disk's read-only filesystem",
}

func modulesFor(b *kernel.Bundle) ([]image.Module, error) {
	if b.Builtin {
		return nil, nil
	}
	have := map[string]bool{}
	for _, m := range b.Modules {
		have[m.Name] = true
	}
	for _, want := range kernel.DefaultModules {
		if !have[want] {
			return nil, fmt.Errorf("kernel bundle %s has no %s module, which this hull needs: import the kernel again (hull kernel import <linux-image-*.deb>, or make kernel)", b.Name, want)
		}
	}
	needers := map[string][]string{}
	for _, m := range b.Modules {
		for _, d := range m.Depends {
			needers[d] = append(needers[d], m.Name)
		}
	}
	out := make([]image.Module, 0, len(b.Modules))
	for _, m := range b.Modules {
		why := moduleWhy[m.Name]
		if why == "" {
			n := needers[m.Name]
			sort.Strings(n)
			why = "needed by " + strings.Join(n, ", ")
		}
		out = append(out, image.Module{Name: m.Name, Src: b.ModulePath(m), Why: why})
	}
	return out, nil
}

func newManifest(s *spec.Spec, prog string, k *kernel.Bundle) *manifest.Manifest {
	env := manifest.MergeEnv([]string{
		"PATH=/usr/local/bin:/usr/bin:/bin",
		"HOME=" + manifest.AppHome,
		"USER=" + manifest.AppUser,
		"LOGNAME=" + manifest.AppUser,
		"HOSTNAME=" + s.Hostname,
	}, s.Env)
	return &manifest.Manifest{
		Version:      manifest.Version,
		Name:         s.Name,
		Program:      prog,
		Args:         append([]string{}, s.Args...),
		Env:          env,
		Cwd:          s.Cwd,
		Hostname:     s.Hostname,
		User:         manifest.User{Name: manifest.AppUser, UID: manifest.AppUID, GID: manifest.AppGID, Home: manifest.AppHome},
		Capabilities: append([]string{}, s.Capabilities...),
		TmpSize:      int64(s.TmpSize),
		NoFile:       manifest.DefaultNoFile,
		Kernel:       manifest.Kernel{Name: k.Name, Digest: k.Digest, Release: k.Release},
		Network:      manifest.Network{Address: manifest.GuestCIDR, Gateway: manifest.GatewayIP, DNS: manifest.DNSIP},
		Runtime:      runtimeDefaults(s),
	}
}

func runtimeDefaults(s *spec.Spec) manifest.Runtime {
	rt := manifest.Runtime{Memory: int64(s.Memory), CPUs: s.CPUs, DNSUpstream: s.DNS.Upstream}
	for _, p := range s.Ports {
		rt.Ports = append(rt.Ports, p.String())
	}
	for _, e := range s.Egress {
		rt.Egress = append(rt.Egress, e.String())
	}
	return rt
}
