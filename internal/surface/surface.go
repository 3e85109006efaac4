// Package surface measures what an attacker who lands in a filesystem
// would find there: programs, shells, interpreters, package managers,
// compilers and download tools, setuid/setgid files and device nodes. It
// classifies by file type and ELF headers plus well-known program names;
// it reads files but never runs them.
//
// It serves `hull inspect` (one image) and `make compare` (a hull image
// against a traditional root filesystem), so both count the same way.
package surface

import (
	"bytes"
	"debug/elf"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// File is one filesystem entry to classify.
type File struct {
	Path string
	Mode fs.FileMode
	Size int64
	// Open returns the content of regular files (nil otherwise).
	Open func() (io.ReadCloser, error)
}

// Report counts a filesystem's attack surface.
type Report struct {
	Files    int   `json:"files"` // regular files
	Dirs     int   `json:"dirs"`
	Symlinks int   `json:"symlinks"`
	Bytes    int64 `json:"bytes"`
	// Programs are executable ELF programs (not shared libraries).
	Programs        []string `json:"programs"`
	SharedLibraries int      `json:"shared_libraries"`
	Setuid          []string `json:"setuid"` // setuid or setgid
	Shells          []string `json:"shells"`
	Interpreters    []string `json:"interpreters"`
	PackageManagers []string `json:"package_managers"`
	Compilers       []string `json:"compilers"`
	Downloaders     []string `json:"downloaders"`
	Devices         []string `json:"devices"`
}

// Tools are the names an attacker looks for, by class. A name matches
// exactly or with a version suffix (python3, python3.11, perl5.36.0).
var Tools = map[string][]string{
	"shell":       {"sh", "bash", "dash", "zsh", "ksh", "mksh", "csh", "tcsh", "fish", "ash", "rbash", "busybox", "toybox"},
	"interpreter": {"python", "perl", "ruby", "node", "nodejs", "php", "lua", "luajit", "tclsh", "wish", "awk", "gawk", "mawk", "nawk", "java", "jshell", "Rscript", "guile", "irb", "deno", "bun", "expect"},
	"package":     {"apt", "apt-get", "aptitude", "dpkg", "dpkg-deb", "rpm", "yum", "dnf", "apk", "pip", "pip3", "npm", "yarn", "gem", "snap", "opkg", "pacman"},
	"compiler":    {"gcc", "g++", "cc", "c++", "cpp", "clang", "clang++", "ld", "ld.bfd", "ld.gold", "as", "go", "rustc", "cargo", "tcc", "javac", "make"},
	"downloader":  {"curl", "wget", "nc", "netcat", "ncat", "socat", "ssh", "scp", "sftp", "ftp", "tftp", "telnet", "rsync", "openssl"},
}

var versionSuffix = regexp.MustCompile(`^[0-9][0-9.]*[a-z]?$`)

// ToolClass returns the class of a file name ("" for none).
func ToolClass(name string) string {
	for class, names := range Tools {
		for _, n := range names {
			if name == n {
				return class
			}
			if strings.HasPrefix(name, n) && versionSuffix.MatchString(strings.TrimPrefix(strings.TrimPrefix(name, n), "-")) {
				return class
			}
		}
	}
	return ""
}

// Classify builds a report. A tool name counts when it is an executable
// file or a symlink (a link named sh is a shell wherever it points).
func Classify(files []File) Report {
	var r Report
	for _, f := range files {
		name := path.Base(f.Path)
		switch {
		case f.Mode.IsDir():
			r.Dirs++
			continue
		case f.Mode&fs.ModeSymlink != 0:
			r.Symlinks++
		case f.Mode&(fs.ModeDevice|fs.ModeCharDevice) != 0:
			r.Devices = append(r.Devices, f.Path)
			continue
		case f.Mode.IsRegular():
			r.Files++
			r.Bytes += f.Size
			if f.Mode&(fs.ModeSetuid|fs.ModeSetgid) != 0 {
				r.Setuid = append(r.Setuid, f.Path)
			}
			switch elfKind(f) {
			case kindProgram:
				r.Programs = append(r.Programs, f.Path)
			case kindLibrary:
				r.SharedLibraries++
			}
		default:
			continue
		}
		executable := f.Mode&fs.ModeSymlink != 0 || f.Mode&0o111 != 0
		if !executable {
			continue
		}
		switch ToolClass(name) {
		case "shell":
			r.Shells = append(r.Shells, f.Path)
		case "interpreter":
			r.Interpreters = append(r.Interpreters, f.Path)
		case "package":
			r.PackageManagers = append(r.PackageManagers, f.Path)
		case "compiler":
			r.Compilers = append(r.Compilers, f.Path)
		case "downloader":
			r.Downloaders = append(r.Downloaders, f.Path)
		}
	}
	for _, l := range [][]string{r.Programs, r.Setuid, r.Shells, r.Interpreters, r.PackageManagers, r.Compilers, r.Downloaders, r.Devices} {
		sort.Strings(l)
	}
	return r
}

type kind int

const (
	kindNone kind = iota
	kindProgram
	kindLibrary
)

// elfKind tells programs from libraries: ET_EXEC, or ET_DYN flagged PIE
// (DF_1_PIE), is a program; other ET_DYN objects are libraries, the
// dynamic loader included.
func elfKind(f File) kind {
	if f.Open == nil || f.Size < 64 {
		return kindNone
	}
	rc, err := f.Open()
	if err != nil {
		return kindNone
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil || !bytes.HasPrefix(data, []byte(elf.ELFMAG)) {
		return kindNone
	}
	return elfKindBytes(data)
}

func elfKindBytes(data []byte) (k kind) {
	defer func() {
		if recover() != nil {
			k = kindNone // a malformed ELF is not a program we can name
		}
	}()
	ef, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		return kindNone
	}
	switch ef.Type {
	case elf.ET_EXEC:
		return kindProgram
	case elf.ET_DYN:
		if flags, err := ef.DynValue(elf.DT_FLAGS_1); err == nil {
			for _, v := range flags {
				if v&uint64(elf.DF_1_PIE) != 0 {
					return kindProgram
				}
			}
		}
		return kindLibrary
	}
	return kindNone
}

// ScanDir walks a directory tree (not following symlinks) into files for
// Classify; paths are relative to root, with a leading slash.
func ScanDir(root string) ([]File, error) {
	var out []File
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		f := File{Path: "/" + filepath.ToSlash(rel), Mode: info.Mode(), Size: info.Size()}
		if rel == "." {
			f.Path = "/"
		}
		if info.Mode().IsRegular() {
			full := p
			f.Open = func() (io.ReadCloser, error) { return os.Open(full) }
		}
		out = append(out, f)
		return nil
	})
	return out, err
}
