package kernel

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// The x86 boot protocol's setup header (Documentation/arch/x86/boot.rst):
// every bzImage carries the boot-sector signature 0xAA55 at 0x1FE and
// "HdrS" at 0x202; setup_sects at 0x1F1 says how many 512-byte sectors
// of real-mode setup follow the boot sector, and the protected-mode
// kernel comes after them.
const (
	bzSetupSects = 0x1f1
	bzBootFlag   = 0x1fe
	bzHeaderMag  = 0x202
	bzHeaderEnd  = 0x206
	// minBzImage is far below any real kernel (a tinyconfig bzImage is
	// several hundred KiB) yet far above a stand-in such as a text file
	// with a forged header.
	minBzImage = 64 << 10
)

// checkBzImage says why the size bytes of r are not an x86 bzImage, or
// returns nil. It reads only the setup header.
func checkBzImage(r io.ReaderAt, size int64) error {
	if size < minBzImage {
		return fmt.Errorf("is %d bytes, too small for an x86 kernel (bzImage)", size)
	}
	var hdr [bzHeaderEnd]byte
	if _, err := r.ReadAt(hdr[:], 0); err != nil {
		return fmt.Errorf("cannot read its boot header (%s)", errText(err))
	}
	if !bytes.Equal(hdr[bzHeaderMag:bzHeaderEnd], []byte("HdrS")) || binary.LittleEndian.Uint16(hdr[bzBootFlag:]) != 0xaa55 {
		return errors.New(`is not an x86 kernel (bzImage): no "HdrS" boot header at 0x202`)
	}
	sects := int64(hdr[bzSetupSects])
	if sects == 0 {
		sects = 4 // the boot protocol's meaning of 0
	}
	if setup := (sects + 1) * 512; size <= setup {
		return fmt.Errorf("is an x86 boot header with no kernel after its %d setup bytes", setup)
	}
	return nil
}

// checkELFKernel says why r is not an x86-64 ELF kernel (a vmlinux QEMU
// can boot through PVH), or returns nil.
func checkELFKernel(r io.ReaderAt) error {
	f, err := elf.NewFile(r)
	if err != nil {
		return fmt.Errorf("is a damaged ELF file (%v)", err)
	}
	defer f.Close()
	switch {
	case f.Class != elf.ELFCLASS64 || f.Data != elf.ELFDATA2LSB || f.Machine != elf.EM_X86_64:
		return fmt.Errorf("is an ELF file for %s %s, not x86-64", f.Class, f.Machine)
	case f.Type != elf.ET_EXEC:
		return fmt.Errorf("is an ELF %s, not an executable kernel (vmlinux)", f.Type)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_LOAD {
			return nil
		}
	}
	return errors.New("is an ELF file with nothing to load, not a kernel (vmlinux)")
}
