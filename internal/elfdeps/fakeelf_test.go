package elfdeps

import (
	"debug/elf"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
)

// fakeELF describes a minimal ELF file carrying only what the loader reads:
// program headers, PT_INTERP and a dynamic segment. Tests use it to build
// sysroots and malformed inputs without a compiler.
type fakeELF struct {
	class   elf.Class   // default ELFCLASS64
	machine elf.Machine // default EM_X86_64
	typ     elf.Type    // default ET_DYN
	interp  string
	needed  []string
	rpath   string
	runpath string
	soname  string
	pthread bool // import pthread_create
	gnuHash bool // size the symbol table with DT_GNU_HASH instead of DT_HASH
	noDyn   bool // omit PT_DYNAMIC
}

func (s fakeELF) bytes() []byte {
	if s.class == elf.ELFCLASSNONE {
		s.class = elf.ELFCLASS64
	}
	if s.machine == elf.EM_NONE {
		s.machine = elf.EM_X86_64
	}
	if s.typ == elf.ET_NONE {
		s.typ = elf.ET_DYN
	}
	le := binary.LittleEndian
	if s.class == elf.ELFCLASS32 {
		h := make([]byte, 52)
		copy(h, elf.ELFMAG)
		h[elf.EI_CLASS], h[elf.EI_DATA], h[elf.EI_VERSION] = byte(elf.ELFCLASS32), byte(elf.ELFDATA2LSB), 1
		le.PutUint16(h[16:], uint16(s.typ))
		le.PutUint16(h[18:], uint16(s.machine))
		le.PutUint32(h[20:], 1)
		le.PutUint16(h[40:], 52)
		le.PutUint16(h[42:], 32)
		le.PutUint16(h[46:], 40)
		return h
	}

	nph := 1
	if s.interp != "" {
		nph++
	}
	if !s.noDyn {
		nph++
	}
	dataStart := 64 + 56*nph
	var data []byte
	at := func() uint64 { return uint64(dataStart + len(data)) }
	align := func() {
		for len(data)%8 != 0 {
			data = append(data, 0)
		}
	}

	var interpOff uint64
	if s.interp != "" {
		interpOff = at()
		data = append(data, s.interp...)
		data = append(data, 0)
	}

	// .dynstr
	strOff := at()
	str := []byte{0}
	addStr := func(v string) uint64 {
		o := uint64(len(str))
		str = append(str, v...)
		str = append(str, 0)
		return o
	}
	type dyn struct {
		tag elf.DynTag
		val uint64
	}
	var dyns []dyn
	for _, n := range s.needed {
		dyns = append(dyns, dyn{elf.DT_NEEDED, addStr(n)})
	}
	if s.rpath != "" {
		dyns = append(dyns, dyn{elf.DT_RPATH, addStr(s.rpath)})
	}
	if s.runpath != "" {
		dyns = append(dyns, dyn{elf.DT_RUNPATH, addStr(s.runpath)})
	}
	if s.soname != "" {
		dyns = append(dyns, dyn{elf.DT_SONAME, addStr(s.soname)})
	}
	pthreadName := addStr("pthread_create")
	data = append(data, str...)
	align()
	dyns = append(dyns, dyn{elf.DT_STRTAB, strOff}, dyn{elf.DT_STRSZ, uint64(len(str))})

	// .dynsym: the null symbol, then pthread_create (undefined) or a defined one.
	symOff := at()
	data = append(data, make([]byte, 24)...)
	sym := make([]byte, 24)
	le.PutUint32(sym[0:], uint32(pthreadName))
	sym[4] = byte(elf.STB_GLOBAL)<<4 | byte(elf.STT_FUNC)
	if !s.pthread {
		le.PutUint16(sym[6:], 1) // defined in some section: not an import
	}
	data = append(data, sym...)
	hashOff := at()
	hashTag := elf.DT_HASH
	words := []uint32{1, 2, 1, 0, 0} // nbucket, nchain, bucket[0], chain[0..1]
	if s.gnuHash {
		// nbuckets, symoffset, bloom words, bloom shift, bloom (64-bit), bucket[0], chain[0] (last)
		hashTag = elf.DT_GNU_HASH
		words = []uint32{1, 1, 1, 0, 0, 0, 1, 0x1235 | 1}
	}
	for _, v := range words {
		data = le.AppendUint32(data, v)
	}
	align()
	dyns = append(dyns, dyn{elf.DT_SYMTAB, symOff}, dyn{elf.DT_SYMENT, 24}, dyn{hashTag, hashOff}, dyn{elf.DT_NULL, 0})

	dynOff := at()
	for _, d := range dyns {
		data = le.AppendUint64(data, uint64(d.tag))
		data = le.AppendUint64(data, d.val)
	}
	dynSize := at() - dynOff
	total := at()

	h := make([]byte, 64)
	copy(h, elf.ELFMAG)
	h[elf.EI_CLASS], h[elf.EI_DATA], h[elf.EI_VERSION] = byte(elf.ELFCLASS64), byte(elf.ELFDATA2LSB), 1
	le.PutUint16(h[16:], uint16(s.typ))
	le.PutUint16(h[18:], uint16(s.machine))
	le.PutUint32(h[20:], 1)
	le.PutUint64(h[32:], 64) // e_phoff
	le.PutUint16(h[52:], 64)
	le.PutUint16(h[54:], 56)
	le.PutUint16(h[56:], uint16(nph))
	le.PutUint16(h[58:], 64)

	phdr := func(typ elf.ProgType, off, size uint64) []byte {
		p := make([]byte, 56)
		le.PutUint32(p[0:], uint32(typ))
		le.PutUint32(p[4:], uint32(elf.PF_R))
		le.PutUint64(p[8:], off)
		le.PutUint64(p[16:], off) // vaddr == offset keeps address mapping trivial
		le.PutUint64(p[24:], off)
		le.PutUint64(p[32:], size)
		le.PutUint64(p[40:], size)
		le.PutUint64(p[48:], 8)
		return p
	}
	out := h
	out = append(out, phdr(elf.PT_LOAD, 0, total)...)
	if s.interp != "" {
		out = append(out, phdr(elf.PT_INTERP, interpOff, uint64(len(s.interp)+1))...)
	}
	if !s.noDyn {
		out = append(out, phdr(elf.PT_DYNAMIC, dynOff, dynSize)...)
	}
	return append(out, data...)
}

// writeFile creates root/p (p slash-separated) with its parents.
func writeFile(t *testing.T, root, p string, data []byte, mode os.FileMode) string {
	t.Helper()
	host := filepath.Join(root, filepath.FromSlash(p))
	if err := os.MkdirAll(filepath.Dir(host), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(host, data, mode); err != nil {
		t.Fatal(err)
	}
	return host
}

// symlink creates root/p -> target with its parents.
func symlink(t *testing.T, root, p, target string) {
	t.Helper()
	host := filepath.Join(root, filepath.FromSlash(p))
	if err := os.MkdirAll(filepath.Dir(host), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, host); err != nil {
		t.Fatal(err)
	}
}

func TestFakeELFParses(t *testing.T) {
	for _, gnu := range []bool{false, true} {
		data := fakeELF{interp: "/lib64/ld.so", needed: []string{"liba.so", "libb.so"}, runpath: "$ORIGIN",
			soname: "libz.so.1", pthread: true, gnuHash: gnu}.bytes()
		dir := t.TempDir()
		writeFile(t, dir, "x", data, 0o755)
		r := &Resolver{Root: dir}
		o, err := r.readObject("/x", "/x")
		if err != nil {
			t.Fatalf("gnuHash=%v: readObject: %v", gnu, err)
		}
		if o.interp != "/lib64/ld.so" || len(o.needed) != 2 || o.needed[1] != "libb.so" || o.soname != "libz.so.1" ||
			len(o.runpath) != 1 || o.runpath[0] != "$ORIGIN" || !o.threads {
			t.Errorf("gnuHash=%v: got %+v", gnu, o)
		}
	}
}
