package lockdown

import (
	"errors"
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Filesystem rights by landlock ABI version.
const (
	fsRightsV1 = unix.LANDLOCK_ACCESS_FS_EXECUTE | unix.LANDLOCK_ACCESS_FS_WRITE_FILE | unix.LANDLOCK_ACCESS_FS_READ_FILE |
		unix.LANDLOCK_ACCESS_FS_READ_DIR | unix.LANDLOCK_ACCESS_FS_REMOVE_DIR | unix.LANDLOCK_ACCESS_FS_REMOVE_FILE |
		unix.LANDLOCK_ACCESS_FS_MAKE_CHAR | unix.LANDLOCK_ACCESS_FS_MAKE_DIR | unix.LANDLOCK_ACCESS_FS_MAKE_REG |
		unix.LANDLOCK_ACCESS_FS_MAKE_SOCK | unix.LANDLOCK_ACCESS_FS_MAKE_FIFO | unix.LANDLOCK_ACCESS_FS_MAKE_BLOCK |
		unix.LANDLOCK_ACCESS_FS_MAKE_SYM
	fsRightsV2 = fsRightsV1 | unix.LANDLOCK_ACCESS_FS_REFER
	fsRightsV3 = fsRightsV2 | unix.LANDLOCK_ACCESS_FS_TRUNCATE

	// fileRights are the only rights a rule on a single file may carry.
	fileRights = unix.LANDLOCK_ACCESS_FS_EXECUTE | unix.LANDLOCK_ACCESS_FS_WRITE_FILE |
		unix.LANDLOCK_ACCESS_FS_READ_FILE | unix.LANDLOCK_ACCESS_FS_TRUNCATE
)

// Access names what a landlock rule grants beneath a path.
type Access int

// Grants.
const (
	ReadOnly   Access = iota // read files, list dirs
	ReadWrite                // also write existing files (e.g. /dev/null)
	Scratch                  // full read/write/create, never execute (tmp)
	Executable               // run this file (the program and its loader)
)

// PathRule grants Access beneath Path.
type PathRule struct {
	Path   string
	Access Access
}

// ErrLandlockUnavailable means the kernel has no landlock (or it is
// disabled); the caller decides whether that is fatal.
var ErrLandlockUnavailable = errors.New("landlock is not available in this kernel")

type rulesetAttr struct{ handledFS uint64 }

type pathBeneath struct {
	allowed  uint64
	parentFD int32
}

// LandlockABI returns the kernel's landlock ABI version (0: none).
func LandlockABI() int {
	v, _, errno := unix.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, 0, 0, 1 /* LANDLOCK_CREATE_RULESET_VERSION */)
	if errno != 0 {
		return 0
	}
	return int(v)
}

// Landlock restricts the calling thread's filesystem access to rules.
// Everything not granted is denied, including executing any file not
// marked Executable. no_new_privs must already be set.
func Landlock(rules []PathRule) (int, error) {
	abi := LandlockABI()
	if abi == 0 {
		return 0, ErrLandlockUnavailable
	}
	handled := uint64(fsRightsV1)
	switch {
	case abi >= 3:
		handled = fsRightsV3
	case abi == 2:
		handled = fsRightsV2
	}
	attr := rulesetAttr{handledFS: handled}
	rfd, _, errno := unix.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr), 0)
	if errno != 0 {
		return abi, fmt.Errorf("creating landlock ruleset: %w", errno)
	}
	defer unix.Close(int(rfd))
	for _, r := range rules {
		if err := addRule(int(rfd), r, handled); err != nil {
			return abi, err
		}
	}
	if _, _, errno := unix.Syscall(unix.SYS_LANDLOCK_RESTRICT_SELF, rfd, 0, 0); errno != 0 {
		return abi, fmt.Errorf("enforcing landlock ruleset: %w", errno)
	}
	return abi, nil
}

func addRule(rfd int, r PathRule, handled uint64) error {
	fd, err := unix.Open(r.Path, unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("landlock rule for %s: %w", r.Path, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("landlock rule for %s: %w", r.Path, err)
	}
	var allowed uint64
	switch r.Access {
	case ReadOnly:
		allowed = unix.LANDLOCK_ACCESS_FS_READ_FILE | unix.LANDLOCK_ACCESS_FS_READ_DIR
	case ReadWrite:
		allowed = unix.LANDLOCK_ACCESS_FS_READ_FILE | unix.LANDLOCK_ACCESS_FS_READ_DIR |
			unix.LANDLOCK_ACCESS_FS_WRITE_FILE | unix.LANDLOCK_ACCESS_FS_TRUNCATE
	case Scratch:
		allowed = fsRightsV3 &^ (unix.LANDLOCK_ACCESS_FS_EXECUTE | unix.LANDLOCK_ACCESS_FS_MAKE_CHAR | unix.LANDLOCK_ACCESS_FS_MAKE_BLOCK)
	case Executable:
		allowed = unix.LANDLOCK_ACCESS_FS_EXECUTE | unix.LANDLOCK_ACCESS_FS_READ_FILE
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		allowed &= fileRights
	}
	allowed &= handled
	pb := pathBeneath{allowed: allowed, parentFD: int32(fd)}
	if _, _, errno := unix.Syscall6(unix.SYS_LANDLOCK_ADD_RULE, uintptr(rfd), unix.LANDLOCK_RULE_PATH_BENEATH,
		uintptr(unsafe.Pointer(&pb)), 0, 0, 0); errno != 0 {
		return fmt.Errorf("landlock rule for %s: %w", r.Path, errno)
	}
	return nil
}
