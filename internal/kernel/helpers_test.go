package kernel

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"debug/elf"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

const testRelease = "6.1.0-99-cloud-amd64"

// elfModule builds a minimal ELF64 relocatable object whose only content
// is a .modinfo section holding info: all the parser looks at.
func elfModule(info string) []byte {
	const shstr = "\x00.modinfo\x00.shstrtab\x00"
	modOff := uint64(64)
	strOff := modOff + uint64(len(info))
	shOff := (strOff + uint64(len(shstr)) + 7) &^ 7
	h := elf.Header64{
		Type: uint16(elf.ET_REL), Machine: uint16(elf.EM_X86_64), Version: uint32(elf.EV_CURRENT),
		Shoff: shOff, Ehsize: 64, Shentsize: 64, Shnum: 3, Shstrndx: 2,
	}
	copy(h.Ident[:], elf.ELFMAG)
	h.Ident[elf.EI_CLASS] = byte(elf.ELFCLASS64)
	h.Ident[elf.EI_DATA] = byte(elf.ELFDATA2LSB)
	h.Ident[elf.EI_VERSION] = byte(elf.EV_CURRENT)
	var buf bytes.Buffer
	binary.Write(&buf, binary.LittleEndian, h)
	buf.WriteString(info)
	buf.WriteString(shstr)
	buf.Write(make([]byte, shOff-uint64(buf.Len())))
	secs := []elf.Section64{
		{},
		{Name: 1, Type: uint32(elf.SHT_PROGBITS), Flags: uint64(elf.SHF_ALLOC), Off: modOff, Size: uint64(len(info)), Addralign: 1},
		{Name: 10, Type: uint32(elf.SHT_STRTAB), Off: strOff, Size: uint64(len(shstr)), Addralign: 1},
	}
	binary.Write(&buf, binary.LittleEndian, secs)
	return buf.Bytes()
}

// fakeBzImage is the smallest file checkBzImage takes for an x86 kernel:
// a setup header (boot flag, "HdrS", 4 setup sectors) then tag, padded to
// minBzImage bytes. Different tags give different kernels.
func fakeBzImage(tag string) []byte {
	img := make([]byte, minBzImage)
	img[bzSetupSects] = 4
	binary.LittleEndian.PutUint16(img[bzBootFlag:], 0xaa55)
	copy(img[bzHeaderMag:], "HdrS")
	binary.LittleEndian.PutUint16(img[bzHeaderEnd:], 0x020f) // boot protocol 2.15
	copy(img[5*512:], tag)
	return img
}

// fakeVmlinux is a minimal x86-64 ELF executable with one loadable
// segment holding tag: what checkELFKernel takes for a vmlinux.
func fakeVmlinux(tag string) []byte {
	const phOff = 64
	dataOff := uint64(phOff + 56)
	h := elf.Header64{
		Type: uint16(elf.ET_EXEC), Machine: uint16(elf.EM_X86_64), Version: uint32(elf.EV_CURRENT),
		Entry: 0x1000000, Phoff: phOff, Ehsize: 64, Phentsize: 56, Phnum: 1,
	}
	copy(h.Ident[:], elf.ELFMAG)
	h.Ident[elf.EI_CLASS] = byte(elf.ELFCLASS64)
	h.Ident[elf.EI_DATA] = byte(elf.ELFDATA2LSB)
	h.Ident[elf.EI_VERSION] = byte(elf.EV_CURRENT)
	var buf bytes.Buffer
	binary.Write(&buf, binary.LittleEndian, h)
	binary.Write(&buf, binary.LittleEndian, elf.Prog64{
		Type: uint32(elf.PT_LOAD), Flags: uint32(elf.PF_R | elf.PF_X), Off: dataOff,
		Vaddr: 0x1000000, Paddr: 0x1000000, Filesz: uint64(len(tag)), Memsz: uint64(len(tag)), Align: 1,
	})
	buf.WriteString(tag)
	return buf.Bytes()
}

// fakeMod is a module file in a synthetic package.
type fakeMod struct {
	path     string // under lib/modules/<release>/
	name     string // name= ("" to leave it out)
	deps     string // depends= value
	vermagic string // "" = the package's release
}

func (m fakeMod) bytes(release string) []byte {
	vm := m.vermagic
	if vm == "" {
		vm = release
	}
	info := "license=GPL\x00description=fake " + m.path + "\x00depends=" + m.deps + "\x00"
	if m.name != "" {
		info += "name=" + m.name + "\x00"
	}
	info += "vermagic=" + vm + " SMP preempt mod_unload modversions \x00"
	return elfModule(info)
}

// virtioMods mirrors the relevant part of Debian's cloud kernel, with the
// same paths (so net_failover comes before virtio_net in the tar) and some
// unrelated modules around them.
var virtioMods = []fakeMod{
	{path: "kernel/drivers/block/virtio_blk.ko", name: "virtio_blk", deps: "virtio,virtio_ring"},
	{path: "kernel/drivers/block/loop.ko", name: "loop"},
	{path: "kernel/drivers/char/virtio_console.ko", name: "virtio_console", deps: "virtio,virtio_ring"},
	{path: "kernel/drivers/char/hw_random/virtio-rng.ko", name: "virtio_rng", deps: "virtio,virtio_ring"},
	{path: "kernel/drivers/net/net_failover.ko", name: "net_failover", deps: "failover"},
	{path: "kernel/drivers/net/virtio_net.ko", name: "virtio_net", deps: "virtio_ring,virtio,net_failover"},
	{path: "kernel/drivers/virtio/virtio.ko", name: "virtio", deps: "virtio_ring"},
	{path: "kernel/drivers/virtio/virtio_mmio.ko", name: "virtio_mmio", deps: "virtio,virtio_ring"},
	{path: "kernel/drivers/virtio/virtio_ring.ko", name: "virtio_ring"},
	{path: "kernel/fs/erofs/erofs.ko", name: "erofs", deps: "libcrc32c"},
	{path: "kernel/fs/fuse/virtiofs.ko", name: "virtiofs", deps: "virtio,virtio_ring,fuse"},
	{path: "kernel/lib/libcrc32c.ko", name: "libcrc32c"},
	{path: "kernel/net/core/failover.ko", name: "failover"},
}

var wantOrder = []string{"failover", "libcrc32c", "erofs", "net_failover", "virtio_ring", "virtio", "virtio_blk", "virtio_console", "virtio_mmio", "virtio_net", "virtio_rng"}

type tarFile struct {
	name string
	body []byte
	typ  byte // 0 = regular
}

// debSpec describes a synthetic linux-image package.
type debSpec struct {
	file     string // base name of the .deb
	release  string
	comp     string // data.tar compression: "", ".xz", ".gz", ".zst"
	mods     []fakeMod
	noKernel bool
	noConfig bool
	control  string
	extra    []tarFile
	reverse  bool // put tar entries in reverse order (deps after users)
}

func defaultSpec() debSpec {
	return debSpec{file: "linux-image-" + testRelease + "_1_amd64.deb", release: testRelease, comp: ".xz", mods: virtioMods}
}

const testConfig = "#\n# Linux/x86 6.1 Kernel Configuration\n#\nCONFIG_VIRTIO=m\nCONFIG_VIRTIO_MMIO=m\nCONFIG_64BIT=y\n" +
	"CONFIG_LOCALVERSION=\"-cloud\"\nCONFIG_NR_CPUS=8192\n# CONFIG_VIRTIO_MEM is not set\n"

func (d debSpec) tarFiles(t testing.TB) []tarFile {
	var files []tarFile
	add := func(name string, body []byte) { files = append(files, tarFile{name: "./" + name, body: body}) }
	if !d.noKernel {
		add("boot/vmlinuz-"+d.release, fakeBzImage("fake bzImage for "+d.release))
		add("boot/System.map-"+d.release, []byte("ffffffff81000000 T _stext\n"))
	}
	if !d.noConfig && !d.noKernel {
		add("boot/config-"+d.release, []byte(testConfig))
	}
	for _, m := range d.mods {
		body := m.bytes(d.release)
		if _, comp, _ := strings.Cut(m.path, ".ko"); comp != "" {
			body = compress(t, comp, body) // newer kernels ship .ko.xz or .ko.zst
		}
		add("lib/modules/"+d.release+"/"+m.path, body)
	}
	if len(d.mods) > 0 {
		add("lib/modules/"+d.release+"/modules.builtin", []byte("kernel/drivers/virtio/virtio_pci_legacy_dev.ko\nkernel/fs/binfmt_script.ko\n"))
	}
	add("usr/share/doc/linux-image-"+d.release+"/changelog.gz", []byte("not really gzip"))
	files = append(files, d.extra...)
	sort.Slice(files, func(i, j int) bool { return files[i].name < files[j].name })
	if d.reverse {
		for i, j := 0, len(files)-1; i < j; i, j = i+1, j-1 {
			files[i], files[j] = files[j], files[i]
		}
	}
	return files
}

func buildTar(t testing.TB, files []tarFile) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := map[string]bool{}
	for _, f := range files {
		// Parent directories first, as dpkg-deb writes them.
		parts := strings.Split(strings.TrimPrefix(f.name, "./"), "/")
		for i := 1; i < len(parts); i++ {
			d := "./" + strings.Join(parts[:i], "/") + "/"
			if !dirs[d] {
				dirs[d] = true
				must(t, tw.WriteHeader(&tar.Header{Name: d, Typeflag: tar.TypeDir, Mode: 0o755}))
			}
		}
		typ := f.typ
		if typ == 0 {
			typ = tar.TypeReg
		}
		hdr := &tar.Header{Name: f.name, Typeflag: typ, Mode: 0o644, Size: int64(len(f.body))}
		if typ == tar.TypeSymlink {
			hdr.Size, hdr.Linkname = 0, string(f.body)
		}
		must(t, tw.WriteHeader(hdr))
		if typ == tar.TypeReg {
			_, err := tw.Write(f.body)
			must(t, err)
		}
	}
	must(t, tw.Close())
	return buf.Bytes()
}

func compress(t testing.TB, comp string, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	switch comp {
	case "":
		return data
	case ".xz":
		w, err := xz.NewWriter(&buf)
		must(t, err)
		_, err = w.Write(data)
		must(t, err)
		must(t, w.Close())
	case ".gz":
		w := gzip.NewWriter(&buf)
		_, err := w.Write(data)
		must(t, err)
		must(t, w.Close())
	case ".zst":
		w, err := zstd.NewWriter(&buf)
		must(t, err)
		_, err = w.Write(data)
		must(t, err)
		must(t, w.Close())
	default:
		t.Fatalf("compress: unknown %q", comp)
	}
	return buf.Bytes()
}

type arMember struct {
	name string
	data []byte
}

func buildAr(members []arMember) []byte {
	var buf bytes.Buffer
	buf.WriteString(arMagic)
	for _, m := range members {
		fmt.Fprintf(&buf, "%-16s%-12d%-6d%-6d%-8s%-10d`\n", m.name, 0, 0, 0, "100644", len(m.data))
		buf.Write(m.data)
		if len(m.data)%2 == 1 {
			buf.WriteByte('\n')
		}
	}
	return buf.Bytes()
}

func (d debSpec) bytes(t testing.TB) []byte {
	t.Helper()
	control := d.control
	if control == "" {
		control = "Package: linux-image-" + d.release + "\nVersion: 1\nArchitecture: amd64\nDepends: kmod, linux-base (>= 4.3~)\nDescription: Linux for testing\n"
	}
	ctl := buildTar(t, []tarFile{{name: "./control", body: []byte(control)}, {name: "./md5sums", body: []byte("x")}})
	return buildAr([]arMember{
		{"debian-binary", []byte("2.0\n")},
		{"control.tar.xz", compress(t, ".xz", ctl)},
		{"data.tar" + d.comp, compress(t, d.comp, buildTar(t, d.tarFiles(t)))},
	})
}

// write stores the package in a fresh directory and returns its path.
func (d debSpec) write(t testing.TB) string {
	t.Helper()
	return writeTemp(t, d.file, d.bytes(t))
}

func writeTemp(t testing.TB, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	must(t, os.WriteFile(p, data, 0o644))
	return p
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// newStore returns a store in a fresh directory that does not exist yet.
func newStore(t testing.TB) *Store {
	t.Helper()
	return &Store{Dir: filepath.Join(t.TempDir(), "kernels")}
}

// storeEntries lists the names in the store directory (none if absent).
func storeEntries(t testing.TB, s *Store) []string {
	t.Helper()
	ents, err := os.ReadDir(s.Dir)
	if os.IsNotExist(err) {
		return nil
	}
	must(t, err)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func moduleNames(b *Bundle) []string {
	var names []string
	for _, m := range b.Modules {
		names = append(names, m.Name)
	}
	return names
}

// checkLoadOrder fails unless every module comes after its dependencies.
func checkLoadOrder(t testing.TB, b *Bundle) {
	t.Helper()
	seen := map[string]bool{}
	for _, m := range b.Modules {
		for _, d := range m.Depends {
			if !seen[d] {
				t.Errorf("module %s comes before its dependency %s", m.Name, d)
			}
		}
		seen[m.Name] = true
	}
}
