package kernel

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/bzip2"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

const (
	// maxModuleSize bounds what is read into memory for one module; the
	// largest in Debian's cloud kernel is about 4 MiB.
	maxModuleSize = 64 << 20
	// maxControlSize bounds the control file read for diagnostics.
	maxControlSize = 1 << 20
)

// ImportDeb reads a linux-image .deb in pure Go and stores a bundle with
// its kernel, its config and the closure of the want modules (nil means
// DefaultModules; an empty list means none) over their depends. Wanted
// modules built into the kernel (modules.builtin) need no file and are
// skipped. Importing the same .deb again returns the existing bundle; the
// first bundle in a store becomes its default. On any error, including
// cancellation of ctx, nothing is left in the store.
//
// The .deb is read once, as a stream. A module's dependencies may come
// earlier in the tar than the module itself, so every module's .modinfo is
// read on the way, and modules nobody needs yet are appended to a spool
// file in the build directory (about 90 MB for Debian's cloud kernel) from
// which late-needed ones are copied. That costs a fraction of a second;
// reading the .deb again would cost a second full xz decompression.
func (s *Store) ImportDeb(ctx context.Context, debPath string, want []string) (*Bundle, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("import %s: %w", debPath, err)
	}
	if want == nil {
		want = DefaultModules
	}
	im := &importer{
		path:    debPath,
		mods:    map[string]*modEntry{},
		need:    map[string]string{},
		have:    map[string]Module{},
		builtin: map[string]map[string]bool{},
	}
	for _, w := range want {
		n := normModuleName(strings.TrimSuffix(w, ".ko"))
		if !validModuleName(n) {
			return nil, fmt.Errorf("import %s: bad module name %q: use a module name such as virtio_net", debPath, w)
		}
		im.addNeed(n, "")
	}
	root, tmp, err := s.newTemp()
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", debPath, err)
	}
	im.tmp = tmp
	b, err := im.run(ctx)
	if err == nil {
		b, err = s.commit(root, tmp, b)
	}
	if err != nil {
		os.RemoveAll(tmp)
		var fe *FormatError
		if errors.As(err, &fe) {
			return nil, err
		}
		return nil, fmt.Errorf("import %s: %w", debPath, err)
	}
	return b, nil
}

// modEntry is what the first pass learns about one module file.
type modEntry struct {
	tarName   string // path in data.tar, for messages
	release   string // from lib/modules/<release>/
	info      modinfo
	err       error    // why the file is not a usable module, if it is not
	dups      []string // other files claiming the same module name
	spooled   bool     // the bytes are in the spool at [off, off+size)
	off, size int64
}

type importer struct {
	path string // the .deb as given
	tmp  string // build directory inside the store

	control    debControl
	release    string // from boot/vmlinuz-<release>
	kernel     *hashedFile
	configRel  string
	config     *hashedFile
	mods       map[string]*modEntry       // every module file seen, by module name
	need       map[string]string          // the closure: module -> who needs it ("" = asked for)
	have       map[string]Module          // modules written into tmp
	builtin    map[string]map[string]bool // release -> modules built into that kernel
	spool      *os.File                   // modules passed over, in case they are needed later
	spoolW     *bufio.Writer
	spoolLen   int64
	sourceSum  string
	buf, zbuf  []byte
	madeModDir bool
}

func (im *importer) formatErr(reason string) error {
	return &FormatError{Path: im.path, Reason: reason}
}

// addNeed adds a module to the closure and, if its file was already seen,
// its dependencies too.
func (im *importer) addNeed(name, by string) {
	if _, ok := im.need[name]; ok {
		return
	}
	im.need[name] = by
	if e := im.mods[name]; e != nil && e.err == nil {
		for _, d := range e.info.Depends {
			im.addNeed(d, name)
		}
	}
}

func (im *importer) run(ctx context.Context) (*Bundle, error) {
	spoolPath := filepath.Join(im.tmp, ".spool")
	spool, err := os.OpenFile(spoolPath, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	im.spool, im.spoolW = spool, bufio.NewWriterSize(spool, 1<<20)
	defer func() {
		spool.Close()
		os.Remove(spoolPath)
	}()
	sum, err := walkDeb(ctx, im.path, debVisitor{control: im.onControl, data: im.onData})
	if err != nil {
		return nil, err
	}
	im.sourceSum = sum
	if im.kernel == nil {
		return nil, im.formatErr(im.noKernelReason())
	}
	if err := im.spoolW.Flush(); err != nil {
		return nil, fmt.Errorf("spool modules: %w", err)
	}
	if err := im.fetchLate(ctx); err != nil {
		return nil, err
	}
	b, err := im.bundle()
	if err != nil {
		return nil, err
	}
	// Last chance to cancel: after this the bundle is committed.
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return b, nil
}

// fetchLate checks the closure once the whole package is read, and copies
// from the spool the needed modules that were seen before anything needed
// them.
func (im *importer) fetchLate(ctx context.Context) error {
	builtin := im.builtin[im.release]
	names := make([]string, 0, len(im.need))
	for n := range im.need {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, name := range names {
		if _, ok := im.have[name]; ok || builtin[name] {
			continue
		}
		e := im.mods[name]
		if e == nil {
			if by := im.need[name]; by != "" {
				return im.formatErr(fmt.Sprintf("module %s, needed by %s, is not in the package (broken package?)", name, by))
			}
			return im.formatErr(fmt.Sprintf("module %s is neither in the package nor built into kernel %s: check the name (e.g. virtio_net) or leave it out", name, im.release))
		}
		if err := im.usable(name, e); err != nil {
			return err
		}
		if !e.spooled {
			return fmt.Errorf("module %s was not kept (internal error)", name)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := im.retain(name, e, io.NewSectionReader(im.spool, e.off, e.size)); err != nil {
			return err
		}
	}
	return nil
}

func (im *importer) usable(name string, e *modEntry) error {
	if e.err != nil {
		return im.formatErr(fmt.Sprintf("module %s (%s) is not usable: %v", name, e.tarName, e.err))
	}
	if len(e.dups) > 0 {
		return im.formatErr(fmt.Sprintf("module %s comes from two files, %s and %s", name, e.tarName, e.dups[0]))
	}
	return nil
}

// bundle checks the modules against the kernel and assembles bundle.json.
func (im *importer) bundle() (*Bundle, error) {
	if im.config != nil && im.configRel != im.release {
		return nil, im.formatErr(fmt.Sprintf("config is for %s but the kernel is %s", im.configRel, im.release))
	}
	for name := range im.have {
		e := im.mods[name]
		if e.release != im.release {
			return nil, im.formatErr(fmt.Sprintf("module %s is for kernel %s but the kernel is %s", name, e.release, im.release))
		}
		// The kernel refuses a module whose vermagic release differs, so
		// catching it here beats a guest that cannot find its devices.
		if v := strings.Fields(e.info.Vermagic); len(v) > 0 && v[0] != im.release {
			return nil, im.formatErr(fmt.Sprintf("module %s was built for kernel %s (vermagic), not %s", name, v[0], im.release))
		}
	}
	order, err := loadOrder(im.have, im.builtin[im.release])
	if err != nil {
		return nil, im.formatErr(err.Error())
	}
	b := &Bundle{
		Name:         "debian-" + im.release,
		Release:      im.release,
		Source:       filepath.Base(im.path),
		SourceSHA256: im.sourceSum,
		Kernel:       kernelFile,
		KernelSHA256: im.kernel.sum,
		KernelSize:   im.kernel.size,
		Modules:      order,
	}
	if im.config != nil {
		b.Config, b.ConfigSHA256 = configFile, im.config.sum
	}
	return b, nil
}

func (im *importer) noKernelReason() string {
	if dep := firstImageDep(im.control.Depends); dep != "" {
		pkg := im.control.Package
		if pkg == "" {
			pkg = "it"
		}
		return fmt.Sprintf("no boot/vmlinuz-* inside: %s is a metapackage that only depends on %s; run `apt-get download %s` and import that .deb", pkg, dep, dep)
	}
	return "no boot/vmlinuz-* inside: not a linux-image package; import a linux-image-<release>_*.deb such as the one linux-image-cloud-amd64 depends on"
}

// onData handles one entry of data.tar.
func (im *importer) onData(hdr *tar.Header, r io.Reader) error {
	if hdr.Typeflag != tar.TypeReg {
		return nil
	}
	p := cleanTarPath(hdr.Name)
	if rel, ok := strings.CutPrefix(p, "boot/vmlinuz-"); ok {
		return im.onKernel(rel, r)
	}
	if rel, ok := strings.CutPrefix(p, "boot/config-"); ok {
		return im.onConfig(rel, r)
	}
	rel, sub, ok := modulesPath(p)
	if !ok {
		return nil
	}
	if sub == "modules.builtin" {
		return im.onBuiltin(rel, r)
	}
	if _, _, ok := moduleFileName(sub); ok {
		return im.onModule(hdr, p, r)
	}
	return nil
}

func (im *importer) onKernel(rel string, r io.Reader) error {
	if checkRelease(rel) != nil {
		return im.formatErr(fmt.Sprintf("kernel boot/vmlinuz-%s has an unusable release name", rel))
	}
	if im.kernel != nil {
		return im.formatErr(fmt.Sprintf("holds two kernels (%s and %s); hull imports one per package", im.release, rel))
	}
	path := filepath.Join(im.tmp, kernelFile)
	f, err := writeHashed(path, r)
	if err != nil {
		return fmt.Errorf("extract kernel: %w", err)
	}
	// A Debian amd64 kernel is always a bzImage; anything else under that
	// name would become a bundle (and maybe the default) that never boots.
	kf, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("extract kernel: %w", err)
	}
	defer kf.Close()
	if err := checkBzImage(kf, f.size); err != nil {
		return im.formatErr(fmt.Sprintf("boot/vmlinuz-%s %v: import an amd64 linux-image package", rel, err))
	}
	im.release, im.kernel = rel, &f
	return nil
}

func (im *importer) onConfig(rel string, r io.Reader) error {
	if im.config != nil {
		return im.formatErr("holds two boot/config-* files")
	}
	f, err := writeHashed(filepath.Join(im.tmp, configFile), r)
	if err != nil {
		return fmt.Errorf("extract config: %w", err)
	}
	im.configRel, im.config = rel, &f
	return nil
}

// onBuiltin reads modules.builtin: one "kernel/.../name.ko" path a line.
func (im *importer) onBuiltin(rel string, r io.Reader) error {
	set := im.builtin[rel]
	if set == nil {
		set = map[string]bool{}
		im.builtin[rel] = set
	}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if name, _, ok := moduleFileName(strings.TrimSpace(sc.Text())); ok && validModuleName(name) {
			set[name] = true
		}
	}
	if err := sc.Err(); err != nil && !errors.Is(err, bufio.ErrTooLong) {
		return err
	}
	return nil
}

func (im *importer) onModule(hdr *tar.Header, p string, r io.Reader) error {
	fileName, comp, _ := moduleFileName(p)
	rel, _, _ := modulesPath(p)
	e := &modEntry{tarName: hdr.Name, release: rel}
	body, err := im.readModule(hdr.Size, comp, r, e)
	if err != nil {
		return err
	}
	name := fileName
	if e.err == nil {
		e.info, e.err = parseModinfo(body)
		if e.err == nil && e.info.Name != "" {
			name = e.info.Name // the kernel knows the module by name=
		}
	}
	if !validModuleName(name) {
		e.err = fmt.Errorf("unusable module file name %q", path.Base(p))
	}
	if old := im.mods[name]; old != nil {
		old.dups = append(old.dups, hdr.Name)
		if _, needed := im.need[name]; needed {
			return im.usable(name, old)
		}
		return nil
	}
	im.mods[name] = e
	if _, needed := im.need[name]; !needed {
		if e.err != nil {
			return nil // unusable; an error only if something needs it
		}
		if _, err := im.spoolW.Write(body); err != nil {
			return fmt.Errorf("spool modules: %w", err)
		}
		e.spooled, e.off, e.size = true, im.spoolLen, int64(len(body))
		im.spoolLen += e.size
		return nil
	}
	if err := im.usable(name, e); err != nil {
		return err
	}
	for _, d := range e.info.Depends {
		im.addNeed(d, name)
	}
	return im.retain(name, e, bytes.NewReader(body))
}

// readModule reads a module file into a reused buffer and decompresses it.
// A problem with the file itself is recorded in e.err; only a failure of
// the surrounding stream is returned.
func (im *importer) readModule(size int64, comp string, r io.Reader, e *modEntry) ([]byte, error) {
	if size > maxModuleSize {
		e.err = fmt.Errorf("%d bytes is too large for a module", size)
		return nil, nil
	}
	if int64(cap(im.buf)) < size {
		im.buf = make([]byte, size)
	}
	raw := im.buf[:size]
	if _, err := io.ReadFull(r, raw); err != nil {
		return nil, err
	}
	if comp == "" {
		return raw, nil
	}
	dec, closeDec, err := decompressor(comp, bytes.NewReader(raw))
	if err != nil {
		e.err = err
		return nil, nil
	}
	defer closeDec()
	out := bytes.NewBuffer(im.zbuf[:0])
	n, err := io.Copy(out, io.LimitReader(dec, maxModuleSize+1))
	im.zbuf = out.Bytes()
	switch {
	case err != nil:
		e.err = fmt.Errorf("decompress: %w", err)
	case n > maxModuleSize:
		e.err = fmt.Errorf("decompresses to more than %d bytes", maxModuleSize)
	default:
		return im.zbuf, nil
	}
	return nil, nil
}

// retain writes a needed module into the bundle, uncompressed: the guest
// init then needs no decompressor and no kernel MODULE_DECOMPRESS.
func (im *importer) retain(name string, e *modEntry, body io.Reader) error {
	if err := im.usable(name, e); err != nil {
		return err
	}
	if !im.madeModDir {
		if err := os.Mkdir(filepath.Join(im.tmp, modulesDir), 0o755); err != nil {
			return err
		}
		im.madeModDir = true
	}
	file := modulesDir + "/" + name + ".ko"
	f, err := writeHashed(filepath.Join(im.tmp, file), body)
	if err != nil {
		return fmt.Errorf("extract module %s: %w", name, err)
	}
	im.have[name] = Module{Name: name, File: file, Depends: e.info.Depends, SHA256: f.sum, Size: f.size}
	return nil
}

// onControl keeps the fields of DEBIAN/control that explain a package
// without a kernel.
func (im *importer) onControl(hdr *tar.Header, r io.Reader) error {
	if hdr.Typeflag != tar.TypeReg || cleanTarPath(hdr.Name) != "control" {
		return nil
	}
	data, err := io.ReadAll(io.LimitReader(r, maxControlSize))
	if err != nil {
		return err
	}
	im.control = parseControl(data)
	return nil
}

type debControl struct {
	Package string
	Depends string
}

func parseControl(data []byte) debControl {
	var c debControl
	var field *string
	for line := range strings.SplitSeq(string(data), "\n") {
		if line != "" && (line[0] == ' ' || line[0] == '\t') {
			if field != nil {
				*field += " " + strings.TrimSpace(line)
			}
			continue
		}
		field = nil
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		switch strings.ToLower(k) {
		case "package":
			c.Package, field = strings.TrimSpace(v), &c.Package
		case "depends":
			c.Depends, field = strings.TrimSpace(v), &c.Depends
		}
	}
	return c
}

// firstImageDep finds the versioned linux-image package a metapackage
// points at, e.g. "linux-image-6.1.0-57-cloud-amd64".
func firstImageDep(depends string) string {
	for alt := range strings.SplitSeq(depends, ",") {
		for dep := range strings.SplitSeq(alt, "|") {
			name, _, _ := strings.Cut(strings.TrimSpace(dep), " ")
			name, _, _ = strings.Cut(name, "(")
			name, _, _ = strings.Cut(name, ":")
			if strings.HasPrefix(name, "linux-image-") && validPackageName(name) {
				return name
			}
		}
	}
	return ""
}

// validPackageName keeps whatever is echoed back in advice to Debian's
// package-name characters.
func validPackageName(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' && c != '.' && c != '+' {
			return false
		}
	}
	return s != ""
}

func cleanTarPath(name string) string {
	return strings.TrimPrefix(path.Clean("/"+name), "/")
}

// modulesPath splits "lib/modules/<release>/<sub>" (or its /usr/lib form,
// for merged-/usr packages).
func modulesPath(p string) (release, sub string, ok bool) {
	p = strings.TrimPrefix(p, "usr/")
	rest, ok := strings.CutPrefix(p, "lib/modules/")
	if !ok {
		return "", "", false
	}
	release, sub, ok = strings.Cut(rest, "/")
	if !ok || sub == "" || checkRelease(release) != nil {
		return "", "", false
	}
	return release, sub, true
}

type debVisitor struct {
	control func(hdr *tar.Header, r io.Reader) error // nil: skip control.tar
	data    func(hdr *tar.Header, r io.Reader) error
}

// walkDeb streams the .deb at path, handing each entry of its control and
// data tars to v, and returns the SHA-256 of the whole file. Errors are
// ctx's, the file's (read failures), a *FormatError for a damaged or
// foreign file, or whatever a visitor returned.
func walkDeb(ctx context.Context, path string, v debVisitor) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		// The caller names the file; keep only the cause.
		return "", fmt.Errorf("cannot open: %w", errors.Unwrap(err))
	}
	defer f.Close()
	h := sha256.New()
	file := &recReader{r: ctxReader{ctx, f}}
	fail := func(reason string, cause error) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		if file.err != nil {
			return fmt.Errorf("read: %w", file.err)
		}
		return &FormatError{Path: path, Reason: reason, Err: cause}
	}
	ar, err := newArReader(bufio.NewReaderSize(io.TeeReader(file, h), 256<<10))
	if err != nil {
		return "", fail("not a .deb: "+err.Error(), nil)
	}
	var members int
	var sawControl, sawData bool
	for {
		hdr, err := ar.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return "", fail("damaged ar archive (truncated download?)", err)
		}
		members++
		if members == 1 {
			if hdr.Name != "debian-binary" {
				return "", fail(fmt.Sprintf("not a Debian binary package (first member is %q, not debian-binary)", hdr.Name), nil)
			}
			ver, err := io.ReadAll(io.LimitReader(ar, 16))
			if err != nil {
				return "", fail("damaged ar archive (truncated download?)", err)
			}
			if !bytes.HasPrefix(ver, []byte("2.")) {
				return "", fail(fmt.Sprintf("unsupported .deb format version %q", strings.TrimSpace(string(ver))), nil)
			}
			continue
		}
		var fn func(*tar.Header, io.Reader) error
		switch {
		case strings.HasPrefix(hdr.Name, "control.tar"):
			if sawControl {
				return "", fail("two control.tar members", nil)
			}
			sawControl, fn = true, v.control
		case strings.HasPrefix(hdr.Name, "data.tar"):
			if sawData {
				return "", fail("two data.tar members", nil)
			}
			sawData, fn = true, v.data
		default:
			continue // e.g. signatures; the ar reader skips the rest
		}
		if fn == nil {
			continue
		}
		if !supportedMember(hdr.Name) {
			return "", fail(fmt.Sprintf("%s: unsupported compression (hull reads .tar, .tar.xz, .tar.zst, .tar.gz, .tar.bz2)", hdr.Name), nil)
		}
		streamErr, cbErr := walkMember(ctx, hdr.Name, ar, fn)
		if streamErr != nil {
			return "", fail(hdr.Name+" is damaged (truncated download?)", streamErr)
		}
		if cbErr != nil {
			if err := ctx.Err(); err != nil {
				return "", err
			}
			return "", cbErr
		}
	}
	if !sawData {
		return "", fail("no data.tar member (truncated download?)", nil)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// walkMember decompresses one tar member and hands its entries to fn. It
// separates failures of the stream (streamErr: damaged file) from failures
// of fn (cbErr: e.g. a full disk).
func walkMember(ctx context.Context, name string, r io.Reader, fn func(*tar.Header, io.Reader) error) (streamErr, cbErr error) {
	dec, closeDec, err := decompressor(memberCompression(name), r)
	if err != nil {
		return err, nil
	}
	defer closeDec()
	rec := &recReader{r: dec}
	tr := tar.NewReader(rec)
	for {
		// Reads are checked too, but one read can hold many small entries.
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err, nil
		}
		if err := fn(hdr, streamTagger{tr}); err != nil {
			if rec.err != nil {
				return rec.err, nil
			}
			var se streamError
			if errors.As(err, &se) {
				return se.err, nil
			}
			return nil, err
		}
	}
	// Drain, so the decompressor checks its trailer and the whole file is
	// hashed.
	if _, err := io.Copy(io.Discard, rec); err != nil {
		return err, nil
	}
	return nil, nil
}

// streamError marks an error that came from reading the archive, so that a
// tar entry cut short is reported as a damaged file, not as a failure of
// the code that was reading it.
type streamError struct{ err error }

func (e streamError) Error() string { return e.err.Error() }
func (e streamError) Unwrap() error { return e.err }

type streamTagger struct{ r io.Reader }

func (t streamTagger) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if err != nil && err != io.EOF {
		err = streamError{err}
	}
	return n, err
}

// recReader remembers the first read error other than io.EOF.
type recReader struct {
	r   io.Reader
	err error
}

func (r *recReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF && r.err == nil {
		r.err = err
	}
	return n, err
}

func memberCompression(name string) string {
	_, comp, _ := strings.Cut(name, ".tar")
	return comp
}

func supportedMember(name string) bool {
	switch memberCompression(name) {
	case "", ".xz", ".zst", ".gz", ".bz2":
		return strings.Contains(name, ".tar")
	}
	return false
}

// decompressor returns a reader for data compressed as comp (".xz",
// ".zst", ".gz", ".bz2", or "" for none) and a func releasing it.
func decompressor(comp string, r io.Reader) (io.Reader, func(), error) {
	nop := func() {}
	switch comp {
	case "":
		return r, nop, nil
	case ".xz":
		d, err := xz.NewReader(r)
		if err != nil {
			return nil, nil, err
		}
		return d, nop, nil
	case ".zst":
		d, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, nil, err
		}
		return d, d.Close, nil
	case ".gz":
		d, err := gzip.NewReader(r)
		if err != nil {
			return nil, nil, err
		}
		return d, nop, nil
	case ".bz2":
		return bzip2.NewReader(r), nop, nil
	}
	return nil, nil, fmt.Errorf("unsupported compression %q", comp)
}
