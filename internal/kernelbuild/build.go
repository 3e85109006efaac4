// Package kernelbuild builds hull's tuned kernel from Debian's
// linux-source package and stores it in the kernel store.
//
// The recipe: unpack /usr/src/linux-source-6.1.tar.xz (installing the
// package, and the build tools, with apt-get when missing), apply the
// patches in order, `make tinyconfig`, merge the config fragment over it,
// `make olddefconfig`, then check that every option the fragment sets kept
// the value it asked for (an option Kconfig silently dropped fails the
// build, naming it), build vmlinux with all cores, and hand the stripped
// image to kernel.Store.AddBuilt with its boot hints: no ACPI, and the
// command-line words the applied patches make useful.
//
// Builds are cached by Key: the source package version, the fragment's
// and patches' bytes and the recipe version. A bundle of that name and
// key already in the store is returned at once, and the name is tagged to
// it again (a custom build of the same name may have taken it); Force
// rebuilds from a clean tree. Damaged bundles in the store are no hit
// and no obstacle.
//
// Invariants:
//   - the store sees a finished kernel or nothing: a failed or cancelled
//     build leaves it as it was (AddBuilt renames a complete bundle into
//     place);
//   - the unpacked, patched source tree appears under its final name only
//     when complete, and one build at a time uses a work directory (a
//     lock file);
//   - the source tarball is checked against the md5 dpkg recorded for it
//     and its SHA-256 is recorded in the bundle.
//
// It runs the kernel's own build (make, gcc, Kconfig) and apt-get; it does
// not boot the kernel, test it, or make it the store's default.
package kernelbuild

import (
	"bufio"
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hullvm/hull/internal/kernel"
)

// The Debian source package the kernel is built from.
const (
	SourcePackage = "linux-source-6.1"
	SourceTarball = "/usr/src/linux-source-6.1.tar.xz"
	sourceDir     = "linux-source-6.1" // the tarball's top directory
)

// recipe is mixed into the cache key; bump it when a change to this
// package changes what a build produces from the same inputs.
const recipe = "2"

// DefaultName is the bundle name of the tuned kernel.
const DefaultName = "tuned"

// BuildDeps are the Debian packages the build needs besides the source:
// compiler and make (build-essential), Kconfig's parser generators
// (bison, flex), bc for the timeconst header, libelf-dev for objtool,
// patch, and xz-utils for the tarball. Module signing would add
// libssl-dev; the tuned kernel has no modules.
var BuildDeps = []string{"build-essential", "bc", "bison", "flex", "libelf-dev", "patch", "xz-utils"}

// Patch is one source patch, applied with `patch -p1`.
type Patch struct {
	Name string
	Data []byte
}

// Options configure a build.
type Options struct {
	Store    *kernel.Store
	Name     string // bundle name; DefaultName when empty
	Fragment []byte // the config fragment (kernel/hull.config)
	Patches  []Patch
	// WorkDir holds the unpacked source and the build tree (about 2 GB);
	// it is reused by later builds.
	WorkDir string
	Force   bool // rebuild from a clean tree even when the store has the result
	Jobs    int  // parallel compile jobs; all CPUs when 0
	// Progress, when set, is told what the build is doing.
	Progress func(Event)
}

// Event is a progress report.
type Event struct {
	Stage string  // "check", "apt", "unpack", "config", "compile", "store"
	Msg   string  // one line
	Frac  float64 // fraction done in [0,1], or -1 when unknown
}

// Result is a finished (or cached) build.
type Result struct {
	Bundle *kernel.Bundle
	Cached bool
	Key    string
	// SourceVersion is the version of the linux-source package used.
	SourceVersion string
	Took          time.Duration
}

// BuildError is a failed step of the kernel build, with the last lines it
// printed (the compiler's error is among them).
type BuildError struct {
	Step string
	Err  error
	Tail []string
	Log  string // full output, when kept
}

func (e *BuildError) Error() string {
	msg := fmt.Sprintf("kernel build: %s: %v", e.Step, e.Err)
	if e.Log != "" {
		msg += " (full log: " + e.Log + ")"
	}
	return msg
}

func (e *BuildError) Unwrap() error { return e.Err }

// Key is the cache key of a build: what goes in decides what comes out.
func Key(sourceVersion string, fragment []byte, patches []Patch) string {
	h := sha256.New()
	fmt.Fprintf(h, "hull kernel build\nrecipe %s\nsource %s %s\narch x86_64\nfragment %x\n", recipe, SourcePackage, sourceVersion, sha256.Sum256(fragment))
	for _, p := range patches {
		fmt.Fprintf(h, "patch %s %x\n", p.Name, sha256.Sum256(p.Data))
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Build builds the tuned kernel, or returns the stored one when nothing
// that goes into it changed.
func Build(ctx context.Context, o Options) (*Result, error) {
	start := time.Now()
	o, err := o.check()
	if err != nil {
		return nil, err
	}
	b := &builder{o: o, sys: hostSystem{}}
	return b.build(ctx, start)
}

// check fills in defaults and refuses options the build would only trip
// over after minutes of compiling: a bundle name AddBuilt refuses, a
// negative job count, a relative work directory (make runs in other
// directories, so O= must be absolute).
func (o Options) check() (Options, error) {
	if o.Name == "" {
		o.Name = DefaultName
	}
	if err := kernel.CheckName(o.Name); err != nil {
		return o, fmt.Errorf("kernel build: %w", err)
	}
	switch {
	case o.Jobs < 0:
		return o, fmt.Errorf("kernel build: %d parallel jobs: give a positive number, or 0 for all CPUs", o.Jobs)
	case o.Jobs == 0:
		o.Jobs = runtime.NumCPU()
	}
	if o.Store == nil || o.WorkDir == "" {
		return o, errors.New("kernel build: no store or work directory")
	}
	abs, err := filepath.Abs(o.WorkDir)
	if err != nil {
		return o, fmt.Errorf("kernel build: work directory %s: %w", o.WorkDir, err)
	}
	o.WorkDir = abs
	return o, nil
}

// LoadPatches reads dir's *.patch files in name order. A directory that
// is missing, unreadable or holds no patches is an error: building
// without the patches asked for would quietly give another kernel.
func LoadPatches(dir string) ([]Patch, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("patch directory %s: %w", dir, errors.Unwrap(err))
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("patch directory %s is not a directory: give the directory holding the *.patch files", dir)
	}
	return ReadPatches(os.DirFS(dir), dir)
}

// ReadPatches reads the *.patch files at the top of fsys (a directory,
// or the patches embedded in hull) in name order, the order they apply;
// where names fsys in errors.
func ReadPatches(fsys fs.FS, where string) ([]Patch, error) {
	names, err := fs.Glob(fsys, "*.patch")
	if err != nil {
		return nil, fmt.Errorf("patch directory %s: %w", where, err)
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("patch directory %s holds no *.patch files: give the directory holding them", where)
	}
	slices.Sort(names)
	patches := make([]Patch, 0, len(names))
	for _, n := range names {
		data, err := fs.ReadFile(fsys, n)
		if err != nil {
			return nil, fmt.Errorf("patch %s: %w", filepath.Join(where, n), errors.Unwrap(err))
		}
		patches = append(patches, Patch{Name: n, Data: data})
	}
	return patches, nil
}

// system is what a build asks of the host; tests replace it.
type system interface {
	// sourceVersion is the installed version of pkg, or "" with the
	// candidate version apt would install.
	sourceVersion(ctx context.Context, pkg string) (installed, candidate string, err error)
	missing(ctx context.Context, pkgs []string) ([]string, error)
	install(ctx context.Context, pkgs []string, progress func(Event)) error
}

type builder struct {
	o   Options
	sys system
}

func (b *builder) progress(stage, msg string, frac float64) {
	if b.o.Progress != nil {
		b.o.Progress(Event{Stage: stage, Msg: msg, Frac: frac})
	}
}

func (b *builder) build(ctx context.Context, start time.Time) (*Result, error) {
	opts, err := ParseFragment(b.o.Fragment)
	if err != nil {
		return nil, fmt.Errorf("kernel build: %w", err)
	}
	installed, candidate, err := b.sys.sourceVersion(ctx, SourcePackage)
	if err != nil {
		return nil, fmt.Errorf("kernel build: %w", err)
	}
	version := installed
	if version == "" {
		version = candidate
	}
	if version == "" {
		return nil, fmt.Errorf("kernel build: apt knows no %s package: run apt-get update (Debian 12 ships it in main)", SourcePackage)
	}
	key := Key(version, b.o.Fragment, b.o.Patches)
	if !b.o.Force {
		if hit, err := b.cached(key); err != nil || hit != nil {
			if hit == nil {
				return nil, err
			}
			return &Result{Bundle: hit, Cached: true, Key: key, SourceVersion: version, Took: time.Since(start)}, nil
		}
	}

	need := append([]string{SourcePackage}, BuildDeps...)
	miss, err := b.sys.missing(ctx, need)
	if err != nil {
		return nil, fmt.Errorf("kernel build: %w", err)
	}
	if len(miss) > 0 {
		b.progress("apt", "installing "+strings.Join(miss, " ")+" with apt-get", -1)
		if err := b.sys.install(ctx, miss, b.o.Progress); err != nil {
			return nil, fmt.Errorf("kernel build: installing %s: %w", strings.Join(miss, " "), err)
		}
		if installed, _, err = b.sys.sourceVersion(ctx, SourcePackage); err != nil || installed == "" {
			return nil, fmt.Errorf("kernel build: %s did not install (%v)", SourcePackage, err)
		}
		if installed != version {
			version, key = installed, Key(installed, b.o.Fragment, b.o.Patches)
			if !b.o.Force {
				hit, err := b.cached(key)
				if err != nil {
					return nil, err
				}
				if hit != nil {
					return &Result{Bundle: hit, Cached: true, Key: key, SourceVersion: version, Took: time.Since(start)}, nil
				}
			}
		}
	}

	if err := os.MkdirAll(b.o.WorkDir, 0o755); err != nil {
		return nil, fmt.Errorf("kernel build: %w", err)
	}
	unlock, err := lockDir(b.o.WorkDir)
	if err != nil {
		return nil, fmt.Errorf("kernel build: %w", err)
	}
	defer unlock()

	b.progress("check", "checking "+SourceTarball+" against dpkg's record", -1)
	srcSum, err := checkTarball(ctx, SourceTarball, SourcePackage)
	if err != nil {
		return nil, fmt.Errorf("kernel build: %w", err)
	}
	treeID := Key(version, nil, b.o.Patches)[:16]
	src, err := b.unpack(ctx, treeID)
	if err != nil {
		return nil, err
	}
	obj := filepath.Join(b.o.WorkDir, "obj-"+treeID)
	if b.o.Force {
		if err := os.RemoveAll(obj); err != nil {
			return nil, fmt.Errorf("kernel build: cleaning %s: %w", obj, err)
		}
	}
	if err := os.MkdirAll(obj, 0o755); err != nil {
		return nil, fmt.Errorf("kernel build: %w", err)
	}
	cfg, err := b.configure(ctx, src, obj, opts)
	if err != nil {
		return nil, err
	}
	if err := b.compile(ctx, src, obj); err != nil {
		return nil, err
	}

	b.progress("store", "storing the kernel", -1)
	out, err := os.MkdirTemp(b.o.WorkDir, ".out-")
	if err != nil {
		return nil, fmt.Errorf("kernel build: %w", err)
	}
	defer os.RemoveAll(out)
	image := filepath.Join(out, "vmlinux")
	if err := b.run(ctx, "strip", obj, nil, "objcopy", "--strip-all", filepath.Join(obj, "vmlinux"), image); err != nil {
		return nil, err
	}
	release, err := os.ReadFile(filepath.Join(obj, "include", "config", "kernel.release"))
	if err != nil {
		return nil, fmt.Errorf("kernel build: reading the kernel release: %w", err)
	}
	bundle, err := b.o.Store.AddBuilt(ctx, kernel.Built{
		Name: b.o.Name, Release: strings.TrimSpace(string(release)),
		Kernel: image, Config: filepath.Join(obj, ".config"),
		Source: SourcePackage + "_" + version + ".tar.xz", SourceSHA256: srcSum,
		BuildKey: key,
		Boot:     BootHints(cfg, b.o.Patches),
	})
	if err != nil {
		return nil, fmt.Errorf("kernel build: %w", err)
	}
	b.prune(treeID)
	return &Result{Bundle: bundle, Key: key, SourceVersion: version, Took: time.Since(start)}, nil
}

// BootHints are how the runner boots a kernel built with this recipe: no
// ACPI (devices come from the command line) and no IO-APIC timer check
// (an emulated PIT makes it wait). When one of the patches adds the
// lapic_timer_period= parameter (hull's 0001), the local APIC timer
// period is preset too (QEMU's and KVM's APIC bus runs at 1 GHz) so the
// kernel does not calibrate it; an unpatched kernel would only complain
// about an unknown parameter. cfg is the final .config.
func BootHints(cfg map[string]string, patches []Patch) kernel.Boot {
	boot := kernel.Boot{NoACPI: true, Cmdline: []string{"no_timer_check"}}
	lapic := slices.ContainsFunc(patches, func(p Patch) bool { return strings.Contains(p.Name, "lapic_timer_period") })
	if hz, err := strconv.Atoi(cfg["CONFIG_HZ"]); lapic && err == nil && hz > 0 {
		boot.Cmdline = append(boot.Cmdline, fmt.Sprintf("lapic_timer_period=%d", 1000000000/hz))
	}
	return boot
}

// cached returns the stored bundle built with key, if it still verifies,
// and makes the build's name mean it again (a custom build of the same
// name may have taken the name since). Bundles that do not load are
// passed over: they are not this build, and one of them must not stop it.
func (b *builder) cached(key string) (*kernel.Bundle, error) {
	list, _, err := b.o.Store.Scan()
	if err != nil {
		return nil, fmt.Errorf("kernel build: %w", err)
	}
	for _, k := range list {
		if k.Name == b.o.Name && k.BuildKey == key && k.Verify() == nil {
			if err := b.o.Store.SetTag(k.Name, k.Digest); err != nil {
				return nil, fmt.Errorf("kernel build: %w", err)
			}
			return k, nil
		}
	}
	return nil, nil
}

// unpack returns the patched source tree for id, unpacking it first when
// it is not there.
func (b *builder) unpack(ctx context.Context, id string) (string, error) {
	final := filepath.Join(b.o.WorkDir, "src-"+id)
	src := filepath.Join(final, sourceDir)
	if st, err := os.Stat(src); err == nil && st.IsDir() {
		return src, nil
	}
	b.progress("unpack", "unpacking "+SourceTarball, -1)
	tmp, err := os.MkdirTemp(b.o.WorkDir, ".src-")
	if err != nil {
		return "", fmt.Errorf("kernel build: %w", err)
	}
	defer os.RemoveAll(tmp) // gone after the rename on success
	if err := b.run(ctx, "unpacking the source", tmp, nil, "tar", "-xf", SourceTarball); err != nil {
		return "", err
	}
	for _, p := range b.o.Patches {
		b.progress("unpack", "applying "+p.Name, -1)
		if err := b.runInput(ctx, "applying "+p.Name, filepath.Join(tmp, sourceDir), p.Data,
			"patch", "-p1", "--forward", "--batch", "--no-backup-if-mismatch", "--quiet"); err != nil {
			return "", err
		}
	}
	os.RemoveAll(final) // a leftover without a complete tree
	if err := os.Rename(tmp, final); err != nil {
		return "", fmt.Errorf("kernel build: %w", err)
	}
	return src, nil
}

// configure makes obj/.config: tinyconfig, the fragment merged over it,
// olddefconfig, then the check. It returns the final options.
func (b *builder) configure(ctx context.Context, src, obj string, opts []Option) (map[string]string, error) {
	b.progress("config", "make tinyconfig + the hull fragment + olddefconfig", -1)
	if err := b.make(ctx, "make tinyconfig", src, obj, nil, "tinyconfig"); err != nil {
		return nil, err
	}
	cfgPath := filepath.Join(obj, ".config")
	base, err := os.ReadFile(cfgPath)
	if err != nil {
		return nil, fmt.Errorf("kernel build: %w", err)
	}
	if err := os.WriteFile(cfgPath, Merge(base, opts), 0o644); err != nil {
		return nil, fmt.Errorf("kernel build: %w", err)
	}
	if err := b.make(ctx, "make olddefconfig", src, obj, nil, "olddefconfig"); err != nil {
		return nil, err
	}
	final, err := os.ReadFile(cfgPath)
	if err != nil {
		return nil, fmt.Errorf("kernel build: %w", err)
	}
	if err := Verify(final, opts); err != nil {
		return nil, fmt.Errorf("kernel build: %w", err)
	}
	return ParseConfig(final), nil
}

// compile builds vmlinux, reporting each compiled unit.
func (b *builder) compile(ctx context.Context, src, obj string) error {
	unitsFile := filepath.Join(b.o.WorkDir, "units")
	total := 0
	if data, err := os.ReadFile(unitsFile); err == nil {
		total, _ = strconv.Atoi(strings.TrimSpace(string(data)))
	}
	units := 0
	onLine := func(line string) {
		f := strings.Fields(line)
		if len(f) < 2 || !strings.HasPrefix(line, "  ") || strings.ToUpper(f[0]) != f[0] {
			return
		}
		units++
		frac := -1.0
		if total > 0 {
			frac = min(float64(units)/float64(total), 0.99)
		}
		b.progress("compile", f[0]+" "+f[len(f)-1], frac)
	}
	b.progress("compile", fmt.Sprintf("make -j%d vmlinux", b.o.Jobs), -1)
	if err := b.make(ctx, "compiling", src, obj, onLine, "-j"+strconv.Itoa(b.o.Jobs), "vmlinux"); err != nil {
		return err
	}
	if units > 100 { // a cold build: remember its size for the next one's progress
		os.WriteFile(unitsFile, []byte(strconv.Itoa(units)+"\n"), 0o644)
	}
	return nil
}

// prune removes source and build trees other than the current one: each
// is about 2 GB.
func (b *builder) prune(id string) {
	ents, err := os.ReadDir(b.o.WorkDir)
	if err != nil {
		return
	}
	for _, e := range ents {
		n := e.Name()
		if (strings.HasPrefix(n, "src-") || strings.HasPrefix(n, "obj-")) && !strings.HasSuffix(n, "-"+id) {
			os.RemoveAll(filepath.Join(b.o.WorkDir, n))
		}
	}
}

// buildEnv is the environment of make: the caller's, without anything
// that would change what the kernel build produces, plus fixed build
// identity so the same inputs give the same kernel.
func buildEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case k == "ARCH", k == "CROSS_COMPILE", k == "CC", k == "LD", k == "LLVM", k == "KCFLAGS", k == "KCPPFLAGS",
			k == "KAFLAGS", k == "LOCALVERSION", k == "INSTALL_PATH", k == "O", k == "V", k == "W", k == "C",
			strings.HasPrefix(k, "KBUILD_"), strings.HasPrefix(k, "KCONFIG_"), k == "MAKEFLAGS", k == "MFLAGS", k == "MAKELEVEL":
			continue
		}
		env = append(env, kv)
	}
	return append(env, "KBUILD_BUILD_USER=hull", "KBUILD_BUILD_HOST=hull", "KBUILD_BUILD_VERSION=1",
		"KBUILD_BUILD_TIMESTAMP=1970-01-01", "LC_ALL=C")
}

func (b *builder) make(ctx context.Context, step, src, obj string, onLine func(string), args ...string) error {
	argv := append([]string{"-C", src, "O=" + obj, "ARCH=x86_64"}, args...)
	return b.exec(ctx, step, src, nil, onLine, filepath.Join(obj, "build.log"), "make", argv...)
}

func (b *builder) run(ctx context.Context, step, dir string, onLine func(string), name string, args ...string) error {
	return b.exec(ctx, step, dir, nil, onLine, "", name, args...)
}

func (b *builder) runInput(ctx context.Context, step, dir string, stdin []byte, name string, args ...string) error {
	return b.exec(ctx, step, dir, stdin, nil, "", name, args...)
}

// tailLines is how much of a failed step's output its error carries.
const tailLines = 25

// exec runs one command, feeding its merged output line by line to
// onLine and to logPath (when set), and fails with the last lines.
func (b *builder) exec(ctx context.Context, step, dir string, stdin []byte, onLine func(string), logPath, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = buildEnv()
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	var logFile *os.File
	if logPath != "" {
		if f, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644); err == nil {
			logFile = f
			defer f.Close()
			fmt.Fprintf(f, "### %s: %s %s\n", step, name, strings.Join(args, " "))
		}
	}
	var tail []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			if logFile != nil {
				logFile.WriteString(line + "\n")
			}
			tail = append(tail, line)
			if len(tail) > tailLines {
				tail = tail[1:]
			}
			if onLine != nil {
				onLine(line)
			}
		}
		io.Copy(io.Discard, pr)
	}()
	err := cmd.Start()
	if err == nil {
		err = cmd.Wait()
	}
	pw.Close()
	<-done
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		err = ctx.Err()
	}
	e := &BuildError{Step: step, Err: err, Tail: tail}
	if logFile != nil {
		e.Log = logPath
	}
	return e
}

// checkTarball hashes the source tarball, checks it against the md5 dpkg
// recorded when it installed the package, and returns its SHA-256.
func checkTarball(ctx context.Context, path, pkg string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("%w (is %s installed?)", err, pkg)
	}
	defer f.Close()
	sh, m5 := sha256.New(), md5.New()
	// Chunk by chunk, so a cancelled build stops within a read.
	w, buf := io.MultiWriter(sh, m5), make([]byte, 1<<20)
	for {
		if err := ctx.Err(); err != nil {
			return "", err
		}
		n, err := f.Read(buf)
		w.Write(buf[:n])
		if err == io.EOF {
			break
		}
		if err != nil {
			return "", fmt.Errorf("reading %s: %w", path, err)
		}
	}
	want, err := dpkgMD5(pkg, path)
	if err != nil {
		return "", err
	}
	if got := hex.EncodeToString(m5.Sum(nil)); got != want {
		return "", fmt.Errorf("%s has md5 %s but dpkg installed %s: reinstall it (apt-get install --reinstall %s)", path, got, want, pkg)
	}
	return hex.EncodeToString(sh.Sum(nil)), nil
}

// dpkgMD5 finds a file's md5 in dpkg's record of the package.
func dpkgMD5(pkg, path string) (string, error) {
	list := "/var/lib/dpkg/info/" + pkg + ".md5sums"
	data, err := os.ReadFile(list)
	if err != nil {
		return "", fmt.Errorf("dpkg has no checksums for %s: %w", pkg, err)
	}
	rel := strings.TrimPrefix(path, "/")
	for _, line := range strings.Split(string(data), "\n") {
		sum, file, ok := strings.Cut(line, "  ")
		if ok && file == rel {
			return sum, nil
		}
	}
	return "", fmt.Errorf("%s lists no checksum for %s", list, path)
}
