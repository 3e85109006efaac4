package elfdeps

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
)

// Limits on what one ELF file may ask us to read; real files stay far below,
// crafted ones must not make us allocate the moon.
const (
	maxInterpLen  = 4096
	maxDynamicLen = 1 << 20
	maxShebangLen = 256
)

// object is what the loader cares about in one ELF file.
type object struct {
	class     elf.Class
	data      elf.Data
	machine   elf.Machine
	typ       elf.Type
	hasInterp bool
	interp    string
	needed    []string
	rpath     []string // DT_RPATH entries, raw; cleared when DT_RUNPATH exists, as ld.so ignores it then
	runpath   []string // DT_RUNPATH entries, raw
	soname    string
	flags1    uint64
	threads   bool // imports pthread_create
}

func (o *object) nodeflib() bool { return o.flags1&uint64(elf.DF_1_NODEFLIB) != 0 }

// readObject opens the file at physical path p inside Root and parses it.
// display is the name used in errors. Errors: *NotELFError, *ArchError,
// *MalformedError, or a *fs.PathError for I/O.
func (r *Resolver) readObject(p, display string) (*object, error) {
	f, err := os.Open(r.HostPath(p))
	if err != nil {
		return nil, ioError("open", display, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, ioError("stat", display, err)
	}
	var head [maxShebangLen]byte
	n, err := f.ReadAt(head[:], 0)
	if err != nil && err != io.EOF {
		return nil, ioError("read", display, err)
	}
	if n < 4 || !bytes.Equal(head[:4], []byte(elf.ELFMAG)) {
		return nil, &NotELFError{Path: display, Shebang: shebang(head[:n])}
	}
	return parseObject(f, fi.Size(), display)
}

func ioError(op, display string, err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	return &fs.PathError{Op: op, Path: printable(display), Err: err}
}

func shebang(head []byte) string {
	if !bytes.HasPrefix(head, []byte("#!")) {
		return ""
	}
	line := head[2:]
	if i := bytes.IndexByte(line, '\n'); i >= 0 {
		line = line[:i]
	}
	s := strings.TrimSpace(string(line))
	if s == "" {
		// A bare "#!" is still a script; say so rather than "not ELF".
		return "#!"
	}
	return s
}

// parseObject is the boundary with debug/elf and our own segment decoding:
// both may meet arbitrary bytes, so a panic here becomes an error naming the
// file instead of taking the caller down.
func parseObject(ra io.ReaderAt, size int64, display string) (obj *object, err error) {
	defer func() {
		if v := recover(); v != nil {
			obj, err = nil, &MalformedError{Path: display, Err: fmt.Errorf("parser panic: %v", v)}
		}
	}()
	f, err := elf.NewFile(ra)
	if err != nil {
		return nil, &MalformedError{Path: display, Err: err}
	}
	o := &object{class: f.Class, data: f.Data, machine: f.Machine, typ: f.Type}
	want := hostABI().machine
	if o.typ != elf.ET_EXEC && o.typ != elf.ET_DYN || o.class != elf.ELFCLASS64 || o.data != elf.ELFDATA2LSB || o.machine != want {
		return o, &ArchError{Path: display, Got: o.machine, Want: want, Class: o.class, Type: o.typ}
	}
	d := &decoder{f: f, ra: ra, size: size}
	if err := d.decode(o); err != nil {
		return nil, &MalformedError{Path: display, Err: err}
	}
	return o, nil
}

// decoder reads what ld.so reads: program headers and the dynamic segment.
// Section headers are optional at run time (and stripped by some tools), so
// they are used only as a last resort for the symbol scan.
type decoder struct {
	f    *elf.File
	ra   io.ReaderAt
	size int64
}

// dynamic-table values collected before strings can be decoded.
type dynInfo struct {
	needed, rpath, runpath []uint64
	soname                 uint64
	hasSoname              bool
	strtab, strsz          uint64
	symtab, syment         uint64
	hash, gnuHash          uint64
	hasStrtab, hasSymtab   bool
	hasHash, hasGnuHash    bool
	flags1                 uint64
}

func (d *decoder) decode(o *object) error {
	var dyn *elf.Prog
	for _, p := range d.f.Progs {
		switch p.Type {
		case elf.PT_INTERP:
			if o.hasInterp {
				continue
			}
			s, err := d.readProg(p, maxInterpLen)
			if err != nil {
				return fmt.Errorf("PT_INTERP: %w", err)
			}
			if i := bytes.IndexByte(s, 0); i >= 0 {
				s = s[:i]
			}
			o.hasInterp = true
			o.interp = string(s)
		case elf.PT_DYNAMIC:
			if dyn == nil {
				dyn = p
			}
		}
	}
	if dyn == nil {
		return nil
	}
	raw, err := d.readProg(dyn, maxDynamicLen)
	if err != nil {
		return fmt.Errorf("PT_DYNAMIC: %w", err)
	}
	di := parseDynamic(raw, d.f.ByteOrder)
	o.flags1 = di.flags1
	if len(di.needed)+len(di.rpath)+len(di.runpath) == 0 && !di.hasSoname && !di.hasSymtab {
		return nil
	}
	if !di.hasStrtab {
		return errors.New("dynamic segment has no DT_STRTAB")
	}
	strtab, err := d.readAddr(di.strtab, di.strsz)
	if err != nil {
		return fmt.Errorf("DT_STRTAB: %w", err)
	}
	str := func(tag string, off uint64) (string, error) {
		if off >= uint64(len(strtab)) {
			return "", fmt.Errorf("%s string offset %#x outside DT_STRTAB (size %#x)", tag, off, len(strtab))
		}
		s := strtab[off:]
		if i := bytes.IndexByte(s, 0); i >= 0 {
			s = s[:i]
		}
		return string(s), nil
	}
	for _, off := range di.needed {
		s, err := str("DT_NEEDED", off)
		if err != nil {
			return err
		}
		o.needed = append(o.needed, s)
	}
	for _, off := range di.runpath {
		s, err := str("DT_RUNPATH", off)
		if err != nil {
			return err
		}
		o.runpath = append(o.runpath, s)
	}
	// ld.so ignores DT_RPATH entirely when DT_RUNPATH is present.
	if len(o.runpath) == 0 {
		for _, off := range di.rpath {
			s, err := str("DT_RPATH", off)
			if err != nil {
				return err
			}
			o.rpath = append(o.rpath, s)
		}
	}
	if di.hasSoname {
		if o.soname, err = str("DT_SONAME", di.soname); err != nil {
			return err
		}
	}
	// The thread flag is advisory: a damaged symbol table must not make an
	// otherwise loadable object unusable, so its errors are dropped.
	o.threads, _ = d.importsSymbol(di, strtab, "pthread_create")
	return nil
}

// readProg returns the file bytes of segment p, refusing absurd sizes.
func (d *decoder) readProg(p *elf.Prog, limit uint64) ([]byte, error) {
	if p.Filesz > limit {
		return nil, fmt.Errorf("segment size %d exceeds %d", p.Filesz, limit)
	}
	return d.readAt(p.Off, p.Filesz)
}

func (d *decoder) readAt(off, n uint64) ([]byte, error) {
	if off > uint64(d.size) || n > uint64(d.size)-off {
		return nil, fmt.Errorf("range [%#x, +%#x) beyond end of file (%#x)", off, n, d.size)
	}
	buf := make([]byte, n)
	if _, err := d.ra.ReadAt(buf, int64(off)); err != nil && !(err == io.EOF && n == 0) {
		return nil, err
	}
	return buf, nil
}

// offset maps a virtual address to a file offset through PT_LOAD segments,
// and returns how many bytes of file data follow it in that segment.
func (d *decoder) offset(addr uint64) (off, avail uint64, ok bool) {
	for _, p := range d.f.Progs {
		if p.Type != elf.PT_LOAD || addr < p.Vaddr || addr-p.Vaddr >= p.Filesz {
			continue
		}
		rel := addr - p.Vaddr
		return p.Off + rel, p.Filesz - rel, true
	}
	return 0, 0, false
}

// readAddr reads up to n bytes at virtual address addr, clamped to the
// segment holding it.
func (d *decoder) readAddr(addr, n uint64) ([]byte, error) {
	off, avail, ok := d.offset(addr)
	if !ok {
		return nil, fmt.Errorf("address %#x is not in any PT_LOAD segment", addr)
	}
	return d.readAt(off, min(n, avail, uint64(d.size)))
}

func parseDynamic(raw []byte, bo binary.ByteOrder) dynInfo {
	var di dynInfo
	for len(raw) >= 16 {
		tag := elf.DynTag(bo.Uint64(raw[0:8]))
		val := bo.Uint64(raw[8:16])
		raw = raw[16:]
		switch tag {
		case elf.DT_NULL:
			return di
		case elf.DT_NEEDED:
			di.needed = append(di.needed, val)
		case elf.DT_RPATH:
			di.rpath = append(di.rpath, val)
		case elf.DT_RUNPATH:
			di.runpath = append(di.runpath, val)
		case elf.DT_SONAME:
			di.soname, di.hasSoname = val, true
		case elf.DT_STRTAB:
			di.strtab, di.hasStrtab = val, true
		case elf.DT_STRSZ:
			di.strsz = val
		case elf.DT_SYMTAB:
			di.symtab, di.hasSymtab = val, true
		case elf.DT_SYMENT:
			di.syment = val
		case elf.DT_HASH:
			di.hash, di.hasHash = val, true
		case elf.DT_GNU_HASH:
			di.gnuHash, di.hasGnuHash = val, true
		case elf.DT_FLAGS_1:
			di.flags1 = val
		}
	}
	return di
}

// importsSymbol reports whether the dynamic symbol table holds an undefined
// global or weak symbol called name. The table's length is only known from
// the hash tables; without them it falls back to the section headers.
func (d *decoder) importsSymbol(di dynInfo, strtab []byte, name string) (bool, error) {
	if !di.hasSymtab {
		return false, nil
	}
	count, err := d.symbolCount(di)
	if err != nil || count == 0 {
		return d.importsSymbolFromSections(name)
	}
	const entSize = 24 // Elf64_Sym
	if di.syment != 0 && di.syment != entSize {
		return false, fmt.Errorf("DT_SYMENT %d, want %d", di.syment, entSize)
	}
	count = min(count, uint64(d.size)/entSize)
	syms, err := d.readAddr(di.symtab, count*entSize)
	if err != nil {
		return false, err
	}
	want := append([]byte(name), 0)
	bo := d.f.ByteOrder
	for ; len(syms) >= entSize; syms = syms[entSize:] {
		nameOff := uint64(bo.Uint32(syms[0:4]))
		info := syms[4]
		shndx := elf.SectionIndex(bo.Uint16(syms[6:8]))
		bind := elf.ST_BIND(info)
		if shndx != elf.SHN_UNDEF || (bind != elf.STB_GLOBAL && bind != elf.STB_WEAK) {
			continue
		}
		if nameOff < uint64(len(strtab)) && bytes.HasPrefix(strtab[nameOff:], want) {
			return true, nil
		}
	}
	return false, nil
}

func (d *decoder) importsSymbolFromSections(name string) (bool, error) {
	syms, err := d.f.ImportedSymbols()
	if err != nil {
		return false, err
	}
	for _, s := range syms {
		if s.Name == name {
			return true, nil
		}
	}
	return false, nil
}

// symbolCount derives the number of dynamic symbols from DT_HASH (nchain) or
// DT_GNU_HASH (highest symbol reachable from any bucket's chain).
func (d *decoder) symbolCount(di dynInfo) (uint64, error) {
	bo := d.f.ByteOrder
	if di.hasHash {
		h, err := d.readAddr(di.hash, 8)
		if err != nil || len(h) < 8 {
			return 0, errors.New("short DT_HASH")
		}
		return uint64(bo.Uint32(h[4:8])), nil
	}
	if !di.hasGnuHash {
		return 0, nil
	}
	h, err := d.readAddr(di.gnuHash, 16)
	if err != nil || len(h) < 16 {
		return 0, errors.New("short DT_GNU_HASH")
	}
	nbuckets := uint64(bo.Uint32(h[0:4]))
	symoff := uint64(bo.Uint32(h[4:8]))
	bloomWords := uint64(bo.Uint32(h[8:12]))
	limit := uint64(d.size)
	if nbuckets > limit/4 || bloomWords > limit/8 {
		return 0, errors.New("DT_GNU_HASH sizes exceed the file")
	}
	bucketsAddr := di.gnuHash + 16 + bloomWords*8
	buckets, err := d.readAddr(bucketsAddr, nbuckets*4)
	if err != nil || uint64(len(buckets)) < nbuckets*4 {
		return 0, errors.New("short DT_GNU_HASH buckets")
	}
	var last uint64
	for i := uint64(0); i < nbuckets; i++ {
		last = max(last, uint64(bo.Uint32(buckets[i*4:])))
	}
	if last < symoff {
		return symoff, nil
	}
	// Walk the chain holding the highest symbol until its end marker.
	chainAddr := bucketsAddr + nbuckets*4
	for steps := uint64(0); steps < limit/4; steps++ {
		c, err := d.readAddr(chainAddr+(last-symoff)*4, 4)
		if err != nil || len(c) < 4 {
			return 0, errors.New("short DT_GNU_HASH chain")
		}
		if bo.Uint32(c)&1 != 0 {
			return last + 1, nil
		}
		last++
	}
	return 0, errors.New("unterminated DT_GNU_HASH chain")
}
