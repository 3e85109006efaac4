// Package kernel keeps the Linux kernels hull boots its images with.
//
// A bundle is one bootable kernel plus everything hull's guest init needs
// from it: the kernel image (vmlinuz), the kernel's .config when it was
// shipped, and the loadable modules the init must finit_module before it can
// reach its devices (virtio over MMIO, console ports, net, rng, blk), listed
// in a load order where every module comes after all of its dependencies.
// Debian's cloud kernel builds those drivers as modules, so a bundle
// imported from a linux-image .deb carries them; a kernel built with the
// drivers built in carries none and says so (Builtin).
//
// Bundles live in a Store directory, one sub-directory per bundle named by
// its digest: the SHA-256 of its bundle.json, which in turn records the
// SHA-256 and size of every other file in the bundle. bundle.json has no
// timestamps and a canonical layout, so importing the same .deb with the
// same module list always gives the same digest. The store's "default" file
// names the digest used when no kernel is asked for, and tags/<name> the
// digest a name means when several bundles carry it (the latest import or
// build of that name, or a cached build that claimed it back).
//
// Invariants:
//   - a bundle directory appears whole or not at all: it is built in a
//     hidden temporary directory inside the store and renamed into place;
//     a failed or cancelled import removes its temporary directory;
//   - the default and tag pointers are replaced atomically (write then
//     rename);
//   - only an x86 bzImage or an x86-64 ELF vmlinux is stored as a kernel;
//   - bundle.json hashes to its directory name, and Verify re-hashes every
//     file, so tampering is detected before a kernel is booted;
//   - store files are read only when they are regular files, and bundle
//     files only at their recorded size, so a symlink, FIFO or device put
//     in the store fails a read instead of hanging it.
//
// The package does not download kernels, boot them, or build initramfs
// images; it reads .deb files in pure Go (no dpkg, ar, tar or xz binaries)
// and never executes anything from them.
package kernel

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/klauspost/compress/zstd"

	"github.com/hullvm/hull/internal/filekind"
)

// DefaultModules are the modules hull's init needs from a modular kernel:
// virtio over MMIO, console/serial ports, net, rng, blk, and erofs for
// the read-only app disk.
var DefaultModules = []string{"virtio_mmio", "virtio_console", "virtio_net", "virtio_rng", "virtio_blk", "erofs"}

// File names inside a bundle directory.
const (
	bundleFile  = "bundle.json"
	kernelFile  = "vmlinuz"
	vmlinuxFile = "vmlinux" // an uncompressed ELF kernel keeps an honest name
	// A built ELF kernel is stored zstd-compressed: its 2 MiB-aligned
	// segments make the file mostly padding. The runner unpacks it on the
	// host, which under emulation is far faster than a bzImage
	// decompressing itself inside the guest.
	vmlinuxZstFile = "vmlinux.zst"
	configFile     = "config"
	modulesDir     = "modules"
)

var (
	// ErrNoKernel is wrapped by Store.Get when the store holds no kernel.
	ErrNoKernel = errors.New("no kernels imported")
	// ErrNotFound is wrapped by Store.Get when a ref matches no bundle.
	ErrNotFound = errors.New("unknown kernel")
	// ErrAmbiguous is wrapped by Store.Get when a ref matches several bundles.
	ErrAmbiguous = errors.New("ambiguous kernel reference")
	// ErrCorrupt is wrapped when a stored bundle no longer matches its digests.
	ErrCorrupt = errors.New("kernel bundle is corrupt")
)

// FormatError reports a file that is not a usable kernel package: not an ar
// archive, not a Debian binary package, truncated, or lacking a kernel or a
// wanted module.
type FormatError struct {
	Path   string // the file as given by the caller
	Reason string // one line naming the problem and, where possible, the fix
	Err    error  // underlying decoder error, if any
}

func (e *FormatError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Path, e.Reason, e.Err)
	}
	return e.Path + ": " + e.Reason
}

func (e *FormatError) Unwrap() error { return e.Err }

// Module is one loadable kernel module of a bundle.
type Module struct {
	Name    string   `json:"name"`    // normalised module name, e.g. "virtio_rng"
	File    string   `json:"file"`    // path relative to the bundle dir, e.g. "modules/virtio_rng.ko"
	Depends []string `json:"depends"` // as in .modinfo, normalised and sorted
	SHA256  string   `json:"sha256"`
	Size    int64    `json:"size"`
}

// Bundle is one stored kernel. Its JSON form is bundle.json.
type Bundle struct {
	Digest       string `json:"-"`             // sha256 hex of the canonical bundle.json bytes; also the directory name
	Name         string `json:"name"`          // e.g. "debian-6.1.0-57-cloud-amd64"
	Release      string `json:"release"`       // uname -r, e.g. "6.1.0-57-cloud-amd64"
	Source       string `json:"source"`        // base name of what it was made from, e.g. the .deb
	SourceSHA256 string `json:"source_sha256"` // sha256 of Source
	Kernel       string `json:"kernel"`        // file name inside the bundle dir: "vmlinuz"
	KernelSHA256 string `json:"kernel_sha256"`
	KernelSize   int64  `json:"kernel_size"`
	// KernelUnpacked is the size of a compressed kernel file unpacked
	// (vmlinux.zst); 0 when the file is stored as booted.
	KernelUnpacked int64    `json:"kernel_unpacked_size,omitempty"`
	Config         string   `json:"config,omitempty"`        // "config" when the kernel's .config was shipped
	ConfigSHA256   string   `json:"config_sha256,omitempty"` // so Verify covers the config too
	Modules        []Module `json:"modules"`                 // load order: every module after all of its depends
	Builtin        bool     `json:"builtin_drivers"`         // drivers built in, nothing to load; false for a .deb import
	// BuildKey is, for a kernel hull built, the cache key of that build
	// (source version and config fragment digest, see package
	// kernelbuild); empty for an imported kernel.
	BuildKey string `json:"build_key,omitempty"`
	// Boot says how the kernel wants to be booted. Its zero value is what
	// a distribution kernel needs, so bundles written before it existed
	// (and .deb imports) keep their digests and their meaning.
	Boot Boot   `json:"boot,omitzero"`
	Dir  string `json:"-"` // absolute dir of the bundle in the store
}

// Boot holds a bundle's boot hints, applied by the runner.
type Boot struct {
	// NoACPI boots the machine without ACPI tables. The kernel then finds
	// its virtio-mmio devices on the command line (virtio_mmio.device=,
	// which QEMU's microvm appends), so it must be built with
	// CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES. A kernel that finds them
	// through ACPI, like Debian's, leaves it false.
	NoACPI bool `json:"no_acpi,omitempty"`
	// Cmdline are extra kernel command-line words, appended after the
	// runner's own.
	Cmdline []string `json:"cmdline,omitempty"`
}

// KernelPath is the absolute path of the kernel image.
func (b *Bundle) KernelPath() string { return filepath.Join(b.Dir, b.Kernel) }

// BootKernel returns a kernel file QEMU can load: the stored image, or a
// compressed one unpacked into dir (which the caller removes).
func (b *Bundle) BootKernel(dir string) (string, error) {
	if b.Kernel != vmlinuxZstFile {
		return b.KernelPath(), nil
	}
	in, _, err := openRegular(b.KernelPath())
	if err != nil {
		return "", fmt.Errorf("kernel %s: %w", b.Name, err)
	}
	defer in.Close()
	dec, err := zstd.NewReader(in, zstd.WithDecoderConcurrency(1))
	if err != nil {
		return "", fmt.Errorf("kernel %s: %w", b.Name, err)
	}
	defer dec.Close()
	out := filepath.Join(dir, vmlinuxFile)
	f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", fmt.Errorf("unpacking kernel %s: %w", b.Name, err)
	}
	n, err := io.Copy(f, dec)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && n != b.KernelUnpacked {
		err = fmt.Errorf("unpacked %d bytes, bundle.json says %d", n, b.KernelUnpacked)
	}
	if err != nil {
		os.Remove(out)
		return "", fmt.Errorf("unpacking kernel %s: %w", b.Name, err)
	}
	return out, nil
}

// ModulePath is the absolute path of one of the bundle's modules.
func (b *Bundle) ModulePath(m Module) string { return filepath.Join(b.Dir, m.File) }

// ConfigValue returns the value of a kernel config option in the shipped
// .config: "y", "m", the literal value (strings unquoted), or "" when the
// option is not set or the config is unknown. The "CONFIG_" prefix may be
// left out. It reads the file on each call; callers ask a handful of times.
func (b *Bundle) ConfigValue(option string) string {
	if b.Config == "" {
		return ""
	}
	if !strings.HasPrefix(option, "CONFIG_") {
		option = "CONFIG_" + option
	}
	f, err := os.Open(filepath.Join(b.Dir, b.Config))
	if err != nil {
		return ""
	}
	defer f.Close()
	return configValue(f, option)
}

// HasConfig reports whether an option is built in or modular ("y" or "m")
// in the shipped config; false when unknown.
func (b *Bundle) HasConfig(option string) bool {
	v := b.ConfigValue(option)
	return v == "y" || v == "m"
}

func configValue(r io.Reader, option string) string {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	prefix := option + "="
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, prefix) {
			continue
		}
		v := strings.TrimSpace(line[len(prefix):])
		if len(v) >= 2 && v[0] == '"' {
			if u, err := strconv.Unquote(v); err == nil {
				return u
			}
		}
		return v
	}
	return ""
}

// Verify re-hashes every file of the bundle (bundle.json against the
// digest, then the kernel, config and modules against bundle.json) and
// returns an error naming the first file that differs or is missing.
// Every file must be a regular file of the recorded size before a byte
// of it is read: a symlink to /dev/zero or a FIFO in its place would
// otherwise keep Verify reading (or waiting) forever.
func (b *Bundle) Verify() error {
	fail := func(file, why string) error {
		return fmt.Errorf("%w: %s: %s %s; %s", ErrCorrupt, b.Dir, file, why, repairAdvice(b))
	}
	// unreadable says why a file could not be hashed.
	unreadable := func(err error) string {
		var nr notRegularError
		var se sizeError
		switch {
		case errors.As(err, &nr):
			return "is " + nr.Error()
		case errors.As(err, &se):
			return se.Error()
		}
		return "is unreadable (" + errText(err) + ")"
	}
	check := func(rel, want string, wantSize int64) error {
		if !filepath.IsLocal(rel) {
			return fail(rel, "points outside the bundle")
		}
		sum, size, err := hashRegular(filepath.Join(b.Dir, rel), wantSize, -1)
		if err != nil {
			return fail(rel, unreadable(err))
		}
		if sum != want {
			return fail(rel, fmt.Sprintf("has sha256 %s (%d bytes), want %s", sum, size, want))
		}
		return nil
	}
	if b.Digest != "" {
		sum, _, err := hashRegular(filepath.Join(b.Dir, bundleFile), -1, maxBundleJSON)
		if err != nil {
			return fail(bundleFile, unreadable(err))
		}
		if sum != b.Digest {
			return fail(bundleFile, "does not match the bundle digest")
		}
	}
	if err := check(b.Kernel, b.KernelSHA256, b.KernelSize); err != nil {
		return err
	}
	if b.Config != "" {
		if err := check(b.Config, b.ConfigSHA256, -1); err != nil {
			return err
		}
	}
	if len(b.Modules) > 0 {
		// The module paths go through this directory: a symlink here
		// would let a bundle's files live anywhere.
		if st, err := os.Lstat(filepath.Join(b.Dir, modulesDir)); err != nil || !st.IsDir() {
			return fail(modulesDir, "is not a directory")
		}
	}
	for _, m := range b.Modules {
		if err := check(m.File, m.SHA256, m.Size); err != nil {
			return err
		}
	}
	return nil
}

// repairAdvice says how to mend a damaged bundle: one hull built is built
// again, an imported one imported again; removing the directory always
// works.
func repairAdvice(b *Bundle) string {
	switch {
	case b == nil:
		return "remove the directory, then re-import the kernel or rebuild it (hull kernel build --force)"
	case b.BuildKey != "":
		return "rebuild it with `hull kernel build --force` (with the --name, --fragment and --patches it was built with) or remove the directory"
	default:
		return "remove the directory and re-import the kernel"
	}
}

// errText shortens an *os.PathError to its cause: the path is already named.
func errText(err error) string {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

// notRegularError is why openRegular refused a file.
type notRegularError struct{ kind string }

func (e notRegularError) Error() string { return e.kind + ", not a regular file" }

// sizeError is a file whose size is not the one recorded for it.
type sizeError struct{ got, want int64 }

func (e sizeError) Error() string { return fmt.Sprintf("has %d bytes, want %d", e.got, e.want) }

// openRegular opens path for reading only when it is a regular file, not
// a symlink, FIFO or device: store files are read by hash and size, and
// one of those in their place could block open or read forever. The
// check is made before opening (opening a FIFO blocks) and again on the
// opened file, so a swap in between is caught too, short of a FIFO
// swapped in at that very moment by someone who can write the store.
func openRegular(path string) (*os.File, fs.FileInfo, error) {
	st, err := os.Lstat(path)
	if err != nil {
		return nil, nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, nil, &os.PathError{Op: "open", Path: path, Err: notRegularError{filekind.Of(st.Mode())}}
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	fst, err := f.Stat()
	if err == nil && (!fst.Mode().IsRegular() || !os.SameFile(st, fst)) {
		err = &os.PathError{Op: "open", Path: path, Err: errors.New("changed while being opened")}
	}
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, fst, nil
}

func hashFile(path string) (sum string, size int64, err error) {
	return hashRegular(path, -1, -1)
}

// hashRegular hashes the regular file at path. A file whose size is not
// want (when want >= 0), or larger than limit (when limit >= 0), is
// refused before it is read; the read stops at the size found, so a file
// growing meanwhile does not keep it going.
func hashRegular(path string, want, limit int64) (sum string, size int64, err error) {
	f, st, err := openRegular(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	if want >= 0 && st.Size() != want {
		return "", 0, sizeError{got: st.Size(), want: want}
	}
	if limit >= 0 && st.Size() > limit {
		return "", 0, fmt.Errorf("%d bytes is more than the %d a bundle allows", st.Size(), limit)
	}
	h := sha256.New()
	n, err := io.Copy(h, io.LimitReader(f, st.Size()+1))
	if err != nil {
		return "", 0, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

func isDigest(s string) bool {
	if len(s) != sha256.Size*2 {
		return false
	}
	return isLowerHex(s)
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
