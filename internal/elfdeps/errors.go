package elfdeps

import (
	"debug/elf"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode"
)

// ErrNotFound is wrapped by AddLibrary when the requested library is absent.
var ErrNotFound = errors.New("shared library not found")

// NotELFError reports a program (or library) that is not an ELF file.
type NotELFError struct {
	Path    string // the file, inside Root
	Shebang string // interpreter line after "#!" when the file is a script; "" otherwise
}

func (e *NotELFError) Error() string {
	if e.Shebang != "" {
		return fmt.Sprintf("%s is a script for %q, not an ELF program: hull builds ELF programs today; "+
			"script runtimes (python, node) are planned — build the interpreter or a compiled binary instead",
			printable(e.Path), e.Shebang)
	}
	return fmt.Sprintf("%s is not an ELF executable (no ELF magic number): hull builds ELF programs only — "+
		"point it at the compiled program", printable(e.Path))
}

// ArchError reports an ELF file that cannot run on the host: another machine,
// another ELF class (32-bit), or a file type that is neither an executable nor
// a shared object (relocatable object, core dump).
type ArchError struct {
	Path  string
	Got   elf.Machine
	Want  elf.Machine
	Class elf.Class // class found in the file
	Type  elf.Type  // type found in the file
}

// wrongType reports whether the file is of a kind no loader accepts, whatever
// its machine.
func (e *ArchError) wrongType() bool {
	return e.Type != elf.ET_EXEC && e.Type != elf.ET_DYN
}

func (e *ArchError) Error() string {
	want := machineName(e.Want)
	switch {
	case e.Type == elf.ET_REL:
		return fmt.Sprintf("%s is a relocatable object file (ET_REL), not a program or shared library: link it into a program first", printable(e.Path))
	case e.Type == elf.ET_CORE:
		return fmt.Sprintf("%s is a core dump (ET_CORE), not a program: point hull at the program itself", printable(e.Path))
	case e.wrongType():
		return fmt.Sprintf("%s is an ELF file of type %v, not a program or shared library", printable(e.Path), e.Type)
	case e.Class != elf.ELFCLASS64:
		return fmt.Sprintf("%s is a %s ELF for %s, but hull builds 64-bit %s programs only: "+
			"rebuild it for %s or use the 64-bit package", printable(e.Path), className(e.Class), machineName(e.Got), want, want)
	default:
		return fmt.Sprintf("%s is an ELF for %s (%v), but hull builds for %s (%v) only: "+
			"rebuild it for %s or use the %s package", printable(e.Path), machineName(e.Got), e.Got, want, e.Want, want, want)
	}
}

// MissingLibraryError reports a DT_NEEDED library that no search directory holds.
type MissingLibraryError struct {
	Name     string   // the DT_NEEDED entry as written
	NeededBy string   // the ELF file whose DT_NEEDED names it
	Searched []string // candidate directories (or the path itself when Name contains '/'), in search order
	Skipped  []string // candidates that exist but were skipped, with the reason
}

func (e *MissingLibraryError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "library %s needed by %s not found", printable(e.Name), printable(e.NeededBy))
	if len(e.Searched) > 0 {
		fmt.Fprintf(&b, " (searched %s)", printableList(e.Searched, ", "))
	}
	if len(e.Skipped) > 0 {
		fmt.Fprintf(&b, " (skipped %s)", printableList(e.Skipped, "; "))
	}
	b.WriteString(": install the package that provides it or add it with `files:`")
	return b.String()
}

// MalformedError reports an ELF file that cannot be parsed.
type MalformedError struct {
	Path string
	Err  error
}

func (e *MalformedError) Error() string {
	return fmt.Sprintf("%s is a malformed ELF file (%v): rebuild it or check it is not truncated", printable(e.Path), e.Err)
}

func (e *MalformedError) Unwrap() error { return e.Err }

// printable returns s unchanged when it is plain text, and Go-quoted when it
// holds control or invalid characters: names come from ELF files and the file
// system, and a crafted one must not forge extra lines in logs.
func printable(s string) string {
	for _, r := range s {
		if r == unicode.ReplacementChar || !unicode.IsPrint(r) {
			return strconv.Quote(s)
		}
	}
	return s
}

func printableList(list []string, sep string) string {
	out := make([]string, len(list))
	for i, s := range list {
		out[i] = printable(s)
	}
	return strings.Join(out, sep)
}

func machineName(m elf.Machine) string {
	switch m {
	case elf.EM_X86_64:
		return "x86-64"
	case elf.EM_AARCH64:
		return "aarch64 (arm64)"
	case elf.EM_386:
		return "i386"
	case elf.EM_ARM:
		return "32-bit arm"
	case elf.EM_RISCV:
		return "riscv"
	case elf.EM_PPC64:
		return "ppc64"
	case elf.EM_S390:
		return "s390x"
	case elf.EM_MIPS:
		return "mips"
	case elf.EM_LOONGARCH:
		return "loongarch"
	}
	return m.String()
}

func className(c elf.Class) string {
	switch c {
	case elf.ELFCLASS32:
		return "32-bit"
	case elf.ELFCLASS64:
		return "64-bit"
	}
	return c.String()
}
