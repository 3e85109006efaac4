package kernel

import (
	"bytes"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"
)

// Store is a directory of kernel bundles, e.g. $XDG_DATA_HOME/hull/kernels.
// It is created on demand (0755).
type Store struct{ Dir string }

const (
	defaultFile = "default"
	// tagsDir holds one file per bundle name, holding the digest that name
	// means when several bundles carry it; see Store.SetTag.
	tagsDir = "tags"
	// maxPointer bounds reads of the default and tag files: a digest and
	// a newline, with room for stray whitespace.
	maxPointer = 256
	tmpPrefix  = ".tmp-" // hidden, so List and people skip half-built bundles
	// maxBundleJSON bounds bundle.json reads; real ones are a few KiB.
	maxBundleJSON = 16 << 20
	// minPrefix is the shortest digest prefix Get accepts, so a typo or a
	// short word is not silently taken for a digest.
	minPrefix = 6
)

// List returns every bundle in the store sorted by Name then Digest. It
// ignores temporary and foreign entries, and fails naming any bundle whose
// bundle.json no longer matches its digest; Scan returns the others too.
func (s *Store) List() ([]*Bundle, error) {
	bundles, broken, err := s.Scan()
	if err != nil {
		return nil, err
	}
	if len(broken) > 0 {
		return nil, broken[0].Err
	}
	return bundles, nil
}

// Broken is a bundle directory whose bundle.json cannot be loaded.
type Broken struct {
	Digest string // the directory name
	Dir    string // absolute
	Err    error  // wraps ErrCorrupt; says what is wrong and how to repair it
}

// Scan returns the bundles that load, sorted as List sorts them, and the
// bundle directories that do not, sorted by digest: one damaged bundle
// must not hide the healthy ones from a listing or a build's cache check.
func (s *Store) Scan() (ok []*Bundle, broken []Broken, err error) {
	ok, bm, err := s.scan()
	if err != nil {
		return nil, nil, err
	}
	dir, _ := s.absDir() // scan succeeded, so this does
	for d, e := range bm {
		broken = append(broken, Broken{Digest: d, Dir: filepath.Join(dir, d), Err: e})
	}
	slices.SortFunc(broken, func(a, b Broken) int { return strings.Compare(a.Digest, b.Digest) })
	return ok, broken, nil
}

// scan loads all bundles, keeping those that fail to load aside by digest
// so Get can still find healthy ones.
func (s *Store) scan() (ok []*Bundle, broken map[string]error, err error) {
	dir, err := s.absDir()
	if err != nil {
		return nil, nil, err
	}
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("list kernels: %w", err)
	}
	broken = map[string]error{}
	for _, e := range ents {
		if !e.IsDir() || !isDigest(e.Name()) {
			continue
		}
		b, err := loadBundle(filepath.Join(dir, e.Name()), e.Name())
		if err != nil {
			broken[e.Name()] = err
			continue
		}
		ok = append(ok, b)
	}
	slices.SortFunc(ok, func(a, b *Bundle) int {
		if c := strings.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		return strings.Compare(a.Digest, b.Digest)
	})
	return ok, broken, nil
}

func (s *Store) absDir() (string, error) {
	if s.Dir == "" {
		return "", errors.New("kernel store: no directory set")
	}
	return filepath.Abs(s.Dir)
}

// loadBundle reads and checks a bundle's bundle.json; it does not hash the
// other files (Verify does).
func loadBundle(dir, digest string) (*Bundle, error) {
	var data []byte
	bad := func(why string) error {
		// The advice depends on how the bundle was made, which a damaged
		// bundle.json may still tell.
		var hint *Bundle
		if data != nil {
			var b Bundle
			if json.Unmarshal(data, &b) == nil && b.Release != "" {
				hint = &b
			}
		}
		return fmt.Errorf("%w: %s: %s; %s", ErrCorrupt, dir, why, repairAdvice(hint))
	}
	f, st, err := openRegular(filepath.Join(dir, bundleFile))
	if err != nil {
		return nil, bad("cannot read " + bundleFile + " (" + errText(err) + ")")
	}
	defer f.Close()
	if st.Size() > maxBundleJSON {
		return nil, bad(bundleFile + " is too large")
	}
	data, err = io.ReadAll(io.LimitReader(f, maxBundleJSON+1))
	if err != nil {
		data = nil
		return nil, bad("cannot read " + bundleFile + " (" + errText(err) + ")")
	}
	if len(data) > maxBundleJSON {
		data = nil
		return nil, bad(bundleFile + " is too large")
	}
	if sum := sha256.Sum256(data); hex.EncodeToString(sum[:]) != digest {
		return nil, bad(bundleFile + " does not match the directory name (edited?)")
	}
	var b Bundle
	if err := json.Unmarshal(data, &b); err != nil {
		return nil, bad(bundleFile + " is not valid JSON: " + err.Error())
	}
	if err := b.checkPaths(); err != nil {
		return nil, bad(err.Error())
	}
	b.Digest, b.Dir = digest, dir
	return &b, nil
}

// checkPaths rejects a bundle.json whose file names would reach outside
// the bundle: Verify and the runner open them.
func (b *Bundle) checkPaths() error {
	if b.Kernel != kernelFile && b.Kernel != vmlinuxFile && b.Kernel != vmlinuxZstFile {
		return fmt.Errorf("unexpected kernel file %q", b.Kernel)
	}
	if b.Config != "" && b.Config != configFile {
		return fmt.Errorf("unexpected config file %q", b.Config)
	}
	for _, m := range b.Modules {
		if !validModuleName(m.Name) || m.File != modulesDir+"/"+m.Name+".ko" {
			return fmt.Errorf("unexpected module entry %q (%q)", m.Name, m.File)
		}
	}
	return nil
}

// Get finds a bundle by ref: "" for the default, a Name, a full digest, or
// a unique digest prefix of at least 6 hex digits.
func (s *Store) Get(ref string) (*Bundle, error) {
	bundles, broken, err := s.scan()
	if err != nil {
		return nil, err
	}
	if len(bundles) == 0 && len(broken) == 0 {
		return nil, fmt.Errorf("%w in %s: run `hull kernel import <linux-image-*.deb>` or `make kernel`", ErrNoKernel, s.Dir)
	}
	if ref == "" {
		def, err := s.Default()
		if err != nil {
			return nil, err
		}
		if def == "" {
			return nil, fmt.Errorf("no default kernel in %s: name one of %s", s.Dir, known(bundles))
		}
		if err, ok := broken[def]; ok {
			return nil, err
		}
		for _, b := range bundles {
			if b.Digest == def {
				return b, nil
			}
		}
		return nil, fmt.Errorf("%w: the default kernel %s is gone from %s: set another default or re-import it", ErrNotFound, short(def), s.Dir)
	}
	def, _ := s.Default()
	return resolve(bundles, broken, ref, s.Dir, def, func() (string, error) { return s.Tag(ref) })
}

// resolve matches ref against loaded bundles (and the digests of broken
// ones, so a broken bundle asked for by digest reports why it is broken).
// tag reads the digest the store's tag for ref names ("" for none).
func resolve(bundles []*Bundle, broken map[string]error, ref, dir, def string, tag func() (string, error)) (*Bundle, error) {
	lref := strings.ToLower(ref)
	if isDigest(lref) {
		if err, ok := broken[lref]; ok {
			return nil, err
		}
		for _, b := range bundles {
			if b.Digest == lref {
				return b, nil
			}
		}
		return nil, fmt.Errorf("%w %s in %s: known kernels are %s", ErrNotFound, ref, dir, known(bundles))
	}
	var named []*Bundle
	for _, b := range bundles {
		if b.Name == ref {
			named = append(named, b)
		}
	}
	// The tag is what the name was last given to (an import, a build, or
	// a cached build of the same name). It decides only between bundles
	// that carry the name, but when it names a damaged bundle, that
	// bundle's error is the answer: the name must never quietly come to
	// mean another kernel.
	if tag != nil {
		t, err := tag()
		switch {
		case err != nil && len(named) > 1:
			return nil, err
		case err == nil && t != "":
			if berr, ok := broken[t]; ok {
				return nil, berr
			}
			for _, b := range named {
				if b.Digest == t {
					return b, nil
				}
			}
		}
	}
	if len(named) > 1 {
		// Without a usable tag, the default one of them is what the name
		// means.
		for _, b := range named {
			if b.Digest == def {
				return b, nil
			}
		}
	}
	switch {
	case len(named) == 1:
		return named[0], nil
	case len(named) > 1:
		return nil, fmt.Errorf("%w: %d kernels are named %s (%s): give a digest instead", ErrAmbiguous, len(named), ref, digests(named))
	}
	if len(lref) >= minPrefix && isLowerHex(lref) {
		var hits []*Bundle
		var brokenHit string
		for _, b := range bundles {
			if strings.HasPrefix(b.Digest, lref) {
				hits = append(hits, b)
			}
		}
		for d := range broken {
			if strings.HasPrefix(d, lref) {
				brokenHit = d
				hits = append(hits, &Bundle{Digest: d, Name: "(corrupt)"})
			}
		}
		switch {
		case len(hits) == 1 && brokenHit != "":
			return nil, broken[brokenHit]
		case len(hits) == 1:
			return hits[0], nil
		case len(hits) > 1:
			return nil, fmt.Errorf("%w: digest prefix %s matches %s: give more digits", ErrAmbiguous, ref, digests(hits))
		}
	}
	return nil, fmt.Errorf("%w %q in %s: known kernels are %s", ErrNotFound, ref, dir, known(bundles))
}

func short(digest string) string {
	if len(digest) > 12 {
		return digest[:12]
	}
	return digest
}

func digests(bs []*Bundle) string {
	var parts []string
	for _, b := range bs {
		parts = append(parts, short(b.Digest))
	}
	slices.Sort(parts)
	return strings.Join(parts, ", ")
}

func known(bs []*Bundle) string {
	if len(bs) == 0 {
		return "(none readable)"
	}
	var parts []string
	for _, b := range bs {
		parts = append(parts, b.Name+" ("+short(b.Digest)+")")
	}
	return strings.Join(parts, ", ")
}

// Default returns the digest of the default bundle, or "" when none is set.
func (s *Store) Default() (string, error) {
	dir, err := s.absDir()
	if err != nil {
		return "", err
	}
	d, err := readPointer(filepath.Join(dir, defaultFile))
	if err != nil {
		return "", fmt.Errorf("read default kernel: %w: set the default again (hull kernel default NAME)", err)
	}
	return d, nil
}

// readPointer reads a file holding one digest (the default, a tag): ""
// when it does not exist. It refuses anything but a small regular file,
// so a FIFO or a device put in its place fails instead of hanging.
func readPointer(path string) (string, error) {
	f, st, err := openRegular(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	defer f.Close()
	if st.Size() > maxPointer {
		return "", fmt.Errorf("%s is %d bytes, not a kernel digest", path, st.Size())
	}
	data, err := io.ReadAll(io.LimitReader(f, maxPointer+1))
	if err != nil {
		return "", err
	}
	d := strings.TrimSpace(string(data))
	if len(data) > maxPointer || !isDigest(d) {
		return "", fmt.Errorf("%s holds %q, not a kernel digest", path, short(d))
	}
	return d, nil
}

// SetDefault makes digest (a full digest of a stored bundle) the default,
// replacing the pointer atomically.
func (s *Store) SetDefault(digest string) error {
	dir, err := s.absDir()
	if err != nil {
		return err
	}
	if !isDigest(digest) {
		return fmt.Errorf("set default kernel: %q is not a full sha256 digest", digest)
	}
	if _, err := loadBundle(filepath.Join(dir, digest), digest); err != nil {
		if errors.Is(err, fs.ErrNotExist) || !dirExists(filepath.Join(dir, digest)) {
			return fmt.Errorf("set default kernel: %w %s in %s", ErrNotFound, short(digest), dir)
		}
		return fmt.Errorf("set default kernel: %w", err)
	}
	return writeFileAtomic(filepath.Join(dir, defaultFile), []byte(digest+"\n"))
}

// tagPath is the file of name's tag, or false for a name that cannot be
// one (no bundle can carry it either: see CheckName and checkRelease).
func tagPath(root, name string) (string, bool) {
	if name == "" || len(name) > 255 || strings.HasPrefix(name, ".") || strings.ContainsAny(name, "/\\\x00") {
		return "", false
	}
	return filepath.Join(root, tagsDir, name), true
}

// Tag returns the digest the store's tag for name holds, or "" when
// there is none.
func (s *Store) Tag(name string) (string, error) {
	dir, err := s.absDir()
	if err != nil {
		return "", err
	}
	p, ok := tagPath(dir, name)
	if !ok {
		return "", nil
	}
	d, err := readPointer(p)
	if err != nil {
		return "", fmt.Errorf("kernel tag %s: %w: run the import or build of that kernel again, or remove the file", name, err)
	}
	return d, nil
}

// SetTag makes name mean the stored bundle digest, which must carry that
// name, when several bundles do (resolve). Imports and AddBuilt tag their
// result; a build that finds its kernel already stored calls this so the
// name comes back to it from, say, a custom build of the same name. The
// tag file is replaced atomically.
func (s *Store) SetTag(name, digest string) error {
	dir, err := s.absDir()
	if err != nil {
		return err
	}
	if !isDigest(digest) {
		return fmt.Errorf("tag kernel %s: %q is not a full sha256 digest", name, digest)
	}
	b, err := loadBundle(filepath.Join(dir, digest), digest)
	if err != nil {
		if !dirExists(filepath.Join(dir, digest)) {
			return fmt.Errorf("tag kernel %s: %w %s in %s", name, ErrNotFound, short(digest), dir)
		}
		return fmt.Errorf("tag kernel %s: %w", name, err)
	}
	if b.Name != name {
		return fmt.Errorf("tag kernel %s: bundle %s is named %s", name, short(digest), b.Name)
	}
	return s.setTag(dir, name, digest)
}

func (s *Store) setTag(root, name, digest string) error {
	p, ok := tagPath(root, name)
	if !ok {
		return fmt.Errorf("tag kernel: %q cannot be a tag name", name)
	}
	if err := writeFileAtomic(p, []byte(digest+"\n")); err != nil {
		return fmt.Errorf("tag kernel %s: %w", name, err)
	}
	return nil
}

func dirExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}

// writeFileAtomic writes data beside path and renames it over path, so a
// reader sees the old or the new content, never a mix.
func writeFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, tmpPrefix+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(0o644)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	syncDir(dir)
	return nil
}

// syncDir makes a rename durable; failure only weakens crash safety, so it
// is not reported.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}

// newTemp creates the hidden build directory for one bundle.
func (s *Store) newTemp() (root, tmp string, err error) {
	root, err = s.absDir()
	if err != nil {
		return "", "", err
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return "", "", fmt.Errorf("create kernel store: %w", err)
	}
	sweep(root)
	sweep(filepath.Join(root, tagsDir)) // writeFileAtomic leftovers
	tmp, err = os.MkdirTemp(root, tmpPrefix)
	if err != nil {
		return "", "", fmt.Errorf("create kernel store: %w", err)
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		os.RemoveAll(tmp)
		return "", "", err
	}
	return root, tmp, nil
}

// staleAge is how old a temporary entry must be before sweep takes it for
// the leftover of a killed import rather than one in progress (an import
// takes seconds).
const staleAge = time.Hour

// sweep removes temporary entries left by imports that were killed before
// they could clean up; a killed import can leave ~90 MB of spooled modules.
// Failures are ignored: the entries are only wasted space.
func sweep(root string) {
	ents, err := os.ReadDir(root)
	if err != nil {
		return
	}
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), tmpPrefix) {
			continue
		}
		if info, err := e.Info(); err == nil && time.Since(info.ModTime()) > staleAge {
			os.RemoveAll(filepath.Join(root, e.Name()))
		}
	}
}

// commit writes bundle.json into the build directory tmp and moves it into
// place under its digest. An existing identical bundle wins if it still
// verifies, and is replaced (repaired) if it does not. The first bundle in
// a store becomes its default. tmp is gone when commit returns.
func (s *Store) commit(root, tmp string, b *Bundle) (*Bundle, error) {
	defer os.RemoveAll(tmp)
	if b.Modules == nil {
		b.Modules = []Module{}
	}
	data, err := json.MarshalIndent(b, "", "  ")
	if err != nil {
		return nil, err
	}
	data = append(data, '\n')
	if err := writeFile(filepath.Join(tmp, bundleFile), bytes.NewReader(data), nil); err != nil {
		return nil, err
	}
	syncDir(tmp)
	sum := sha256.Sum256(data)
	digest := hex.EncodeToString(sum[:])
	final := filepath.Join(root, digest)

	if dirExists(final) {
		old, err := loadBundle(final, digest)
		if err == nil && old.Verify() == nil {
			return old, s.point(root, old)
		}
		// Repair: move the damaged copy aside, then put the new one in.
		aside, err := os.MkdirTemp(root, tmpPrefix+"old-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(aside)
		if err := os.Rename(final, filepath.Join(aside, "b")); err != nil {
			return nil, err
		}
	}
	if err := os.Rename(tmp, final); err != nil {
		// A concurrent import of the same bundle may have won the race.
		if old, lerr := loadBundle(final, digest); lerr == nil {
			return old, s.point(root, old)
		}
		return nil, err
	}
	syncDir(root)
	b.Digest, b.Dir = digest, final
	return b, s.point(root, b)
}

// point makes a just-stored bundle what its name means (its tag) and,
// where ensureDefault says so, the default.
func (s *Store) point(root string, b *Bundle) error {
	if err := s.setTag(root, b.Name, b.Digest); err != nil {
		return err
	}
	return s.ensureDefault(root, b.Digest)
}

// ensureDefault points the default at digest when there is no usable
// default yet, or when the default is an older import of the same kernel
// (same name), which the new import supersedes.
func (s *Store) ensureDefault(root, digest string) error {
	cur, err := s.Default()
	if err == nil && cur != "" && cur != digest && dirExists(filepath.Join(root, cur)) {
		curB, cerr := loadBundle(filepath.Join(root, cur), cur)
		newB, nerr := loadBundle(filepath.Join(root, digest), digest)
		if cerr != nil || nerr != nil || curB.Name != newB.Name {
			return nil
		}
	} else if err == nil && cur == digest {
		return nil
	}
	if err := writeFileAtomic(filepath.Join(root, defaultFile), []byte(digest+"\n")); err != nil {
		return fmt.Errorf("set default kernel: %w", err)
	}
	return nil
}

// writeFile creates path (which must not exist) from r with mode 0644,
// feeding every byte to h when h is non-nil, and syncs it.
func writeFile(path string, r io.Reader, h io.Writer) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	w := io.Writer(f)
	if h != nil {
		w = io.MultiWriter(f, h)
	}
	_, err = io.Copy(w, r)
	if err == nil {
		err = f.Chmod(0o644) // exact mode whatever the umask
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// hashedFile is the result of copying a file into a bundle.
type hashedFile struct {
	sum  string
	size int64
}

func writeHashed(path string, r io.Reader) (hashedFile, error) {
	h := sha256.New()
	cr := &countReader{r: r}
	if err := writeFile(path, cr, h); err != nil {
		return hashedFile{}, err
	}
	return hashedFile{sum: hex.EncodeToString(h.Sum(nil)), size: cr.n}, nil
}

// compressed streams r through zstd at its best ratio, single-threaded
// so the same input always gives the same bytes (the bundle digest
// depends on them).
func compressed(r io.Reader) io.ReadCloser {
	pr, pw := io.Pipe()
	go func() {
		enc, err := zstd.NewWriter(pw, zstd.WithEncoderLevel(zstd.SpeedBestCompression), zstd.WithEncoderConcurrency(1))
		if err == nil {
			_, err = io.Copy(enc, r)
			if cerr := enc.Close(); err == nil {
				err = cerr
			}
		}
		pw.CloseWithError(err)
	}()
	return pr
}

type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// ctxReader fails reads once ctx is done, so a long copy or decompression
// stops promptly on cancellation.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// Built describes a kernel built outside the store, for AddBuilt.
type Built struct {
	Name    string // bundle name, e.g. "tuned"
	Release string // uname -r of the kernel
	Kernel  string // path of the kernel image: an ELF vmlinux (PVH) or a bzImage
	Config  string // path of its .config; optional
	// Source and SourceSHA256 name what it was built from (e.g. the
	// linux-source tarball); when Source is empty the kernel image's own
	// base name and digest stand in.
	Source       string
	SourceSHA256 string
	BuildKey     string // see Bundle.BuildKey
	Boot         Boot
}

// Add stores an already-built kernel (from a tuned-kernel build): a copy of
// kernelPath, and of configPath when non-empty, with no modules and
// Builtin set.
func (s *Store) Add(ctx context.Context, name, release, kernelPath, configPath string) (*Bundle, error) {
	return s.AddBuilt(ctx, Built{Name: name, Release: release, Kernel: kernelPath, Config: configPath})
}

// AddBuilt stores a kernel with its drivers built in, as Add does, with
// its provenance and boot hints recorded in bundle.json.
func (s *Store) AddBuilt(ctx context.Context, k Built) (*Bundle, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("add kernel: %w", err)
	}
	if err := CheckName(k.Name); err != nil {
		return nil, fmt.Errorf("add kernel: %w", err)
	}
	if err := checkRelease(k.Release); err != nil {
		return nil, fmt.Errorf("add kernel: %w", err)
	}
	if k.Source != "" && (k.SourceSHA256 == "" || !isDigest(k.SourceSHA256) || strings.ContainsAny(k.Source, "/\n")) {
		return nil, fmt.Errorf("add kernel %s: source %q needs a plain name and a sha256", k.Name, k.Source)
	}
	b, err := s.add(ctx, k)
	if err != nil {
		return nil, fmt.Errorf("add kernel %s: %w", k.Name, err)
	}
	return b, nil
}

func (s *Store) add(ctx context.Context, k Built) (*Bundle, error) {
	kernelPath, configPath := k.Kernel, k.Config
	kf, err := os.Open(kernelPath)
	if err != nil {
		return nil, err
	}
	defer kf.Close()
	st, err := kf.Stat()
	if err != nil {
		return nil, err
	} else if !st.Mode().IsRegular() || st.Size() == 0 {
		return nil, fmt.Errorf("%s is not a kernel image (empty or not a regular file)", kernelPath)
	}
	kname := kernelFile
	var magic [4]byte
	if _, err := io.ReadFull(kf, magic[:]); err == nil && string(magic[:]) == elf.ELFMAG {
		kname = vmlinuxZstFile
	}
	// The bundle would otherwise boot whatever file it was given, and the
	// mistake would only show as a guest that never starts.
	check := checkBzImage(kf, st.Size())
	if kname == vmlinuxZstFile {
		check = checkELFKernel(kf)
	}
	if check != nil {
		return nil, fmt.Errorf("%s %v: give a bzImage or an x86-64 vmlinux", kernelPath, check)
	}
	if _, err := kf.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	srcHash := sha256.New()
	var src io.Reader = io.TeeReader(ctxReader{ctx, kf}, srcHash)
	unpacked := &countReader{r: src}
	src = unpacked
	if kname == vmlinuxZstFile {
		zr := compressed(unpacked)
		defer zr.Close() // ends the compressor early when the write fails
		src = zr
	}

	root, tmp, err := s.newTemp()
	if err != nil {
		return nil, err
	}
	b := &Bundle{Name: k.Name, Release: k.Release, Source: filepath.Base(kernelPath), Kernel: kname, Modules: []Module{}, Builtin: true,
		BuildKey: k.BuildKey, Boot: k.Boot}
	ks, err := writeHashed(filepath.Join(tmp, kname), src)
	if err != nil {
		os.RemoveAll(tmp)
		return nil, err
	}
	b.KernelSHA256, b.KernelSize = ks.sum, ks.size
	if kname == vmlinuxZstFile {
		b.KernelUnpacked = unpacked.n
	}
	b.SourceSHA256 = hex.EncodeToString(srcHash.Sum(nil))
	if k.Source != "" {
		b.Source, b.SourceSHA256 = k.Source, k.SourceSHA256
	}
	if configPath != "" {
		cf, err := os.Open(configPath)
		if err != nil {
			os.RemoveAll(tmp)
			return nil, err
		}
		c, err := writeHashed(filepath.Join(tmp, configFile), ctxReader{ctx, cf})
		cf.Close()
		if err != nil {
			os.RemoveAll(tmp)
			return nil, err
		}
		b.Config, b.ConfigSHA256 = configFile, c.sum
	}
	if err := ctx.Err(); err != nil {
		os.RemoveAll(tmp)
		return nil, err
	}
	return s.commit(root, tmp, b)
}

// CheckName accepts names that are safe in messages and on command lines
// and cannot be mistaken for a digest prefix. It is the rule AddBuilt
// applies, exported so a caller can refuse a bad name before the work of
// building the kernel.
func CheckName(name string) error {
	if name == "" {
		return errors.New("empty kernel name")
	}
	for i, c := range name {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' ||
			i > 0 && (c == '.' || c == '-' || c == '+')
		if !ok || len(name) > 128 {
			return fmt.Errorf("kernel name %q: use letters, digits and . _ - + only (not first), at most 128", name)
		}
	}
	if isLowerHex(strings.ToLower(name)) {
		return fmt.Errorf("kernel name %q looks like a digest: add a letter beyond a-f", name)
	}
	return nil
}

// checkRelease accepts what uname -r can print and a path element can hold.
func checkRelease(rel string) error {
	if rel == "" || rel == "." || rel == ".." || len(rel) > 64 {
		return fmt.Errorf("bad kernel release %q", rel)
	}
	for _, c := range rel {
		if c > 0x7e || c <= ' ' || c == '/' {
			return fmt.Errorf("bad kernel release %q", rel)
		}
	}
	return nil
}
