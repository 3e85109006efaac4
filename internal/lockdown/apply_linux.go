package lockdown

import (
	"errors"
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The steps below act on the calling thread only (capset, prctl,
// landlock_restrict_self, seccomp without TSYNC). The caller locks its OS
// thread and execs from it, so the new program inherits exactly that
// thread's state.

const (
	seccompSetModeFilter     = 1
	seccompGetNotifSizes     = 3
	seccompFlagNewListener   = 1 << 3
	seccompIoctlNotifRecv    = 0xc0502100
	seccompIoctlNotifSend    = 0xc0182101
	seccompIoctlNotifIDValid = 0x40082102
)

type sockFprog struct {
	Len    uint16
	_      [6]byte
	Filter *Instruction
}

// InstallFilter loads prog on the calling thread. With listener true it
// asks for a user-notification descriptor, returned as fd (else -1).
// no_new_privs must already be set.
func InstallFilter(prog []Instruction, listener bool) (int, error) {
	if len(prog) == 0 {
		return -1, errors.New("empty seccomp program")
	}
	fp := sockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	flags := uintptr(0)
	if listener {
		flags |= seccompFlagNewListener
	}
	r, _, errno := unix.Syscall(unix.SYS_SECCOMP, seccompSetModeFilter, flags, uintptr(unsafe.Pointer(&fp)))
	if errno != 0 {
		return -1, fmt.Errorf("installing seccomp filter: %w", errno)
	}
	if !listener {
		return -1, nil
	}
	return int(r), nil
}

// NoNewPrivs sets PR_SET_NO_NEW_PRIVS: exec can never grant privileges.
func NoNewPrivs() error {
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("setting no_new_privs: %w", err)
	}
	return nil
}

// DropBoundingSet removes every capability not in keep from the bounding
// set, so nothing the app execs could ever regain it. Needs CAP_SETPCAP.
func DropBoundingSet(keep []int) error {
	k := map[int]bool{}
	for _, c := range keep {
		k[c] = true
	}
	for c := 0; c <= unix.CAP_LAST_CAP; c++ {
		if k[c] {
			continue
		}
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil {
			if errors.Is(err, unix.EINVAL) {
				break // capability unknown to this kernel: none higher either
			}
			return fmt.Errorf("dropping capability %d from the bounding set: %w", c, err)
		}
	}
	return nil
}

// SetCaps sets this thread's effective, permitted and inheritable sets to
// exactly caps and raises them as ambient, so they survive the exec of a
// non-root program. With caps empty everything is cleared.
func SetCaps(caps []int) error {
	var data [2]unix.CapUserData
	for _, c := range caps {
		data[c/32].Effective |= 1 << (c % 32)
		data[c/32].Permitted |= 1 << (c % 32)
		data[c/32].Inheritable |= 1 << (c % 32)
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("setting capabilities: %w", err)
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil {
		return fmt.Errorf("clearing ambient capabilities: %w", err)
	}
	for _, c := range caps {
		if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_RAISE, uintptr(c), 0, 0); err != nil {
			return fmt.Errorf("raising ambient capability %d: %w", c, err)
		}
	}
	return nil
}

// Notif is one seccomp user notification (struct seccomp_notif).
type Notif struct {
	ID    uint64
	PID   uint32
	Flags uint32
	Nr    int32
	Arch  uint32
	IP    uint64
	Args  [6]uint64
}

type notifResp struct {
	ID    uint64
	Val   int64
	Error int32
	Flags uint32
}

// RecvNotif blocks for the next notification on a listener.
func RecvNotif(fd int) (*Notif, error) {
	var n Notif
	for {
		// The kernel insists on a zeroed buffer.
		n = Notif{}
		_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), seccompIoctlNotifRecv, uintptr(unsafe.Pointer(&n)))
		switch errno {
		case 0:
			return &n, nil
		case unix.EINTR:
			continue
		case unix.ENOENT:
			// The task was killed before we read it; wait for the next.
			continue
		}
		return nil, fmt.Errorf("receiving seccomp notification: %w", errno)
	}
}

// NotifValid reports whether the notification's task still waits, so
// data read from its memory belongs to it.
func NotifValid(fd int, id uint64) bool {
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), seccompIoctlNotifIDValid, uintptr(unsafe.Pointer(&id)))
	return errno == 0
}

// DenyNotif answers a notification with -errno.
func DenyNotif(fd int, id uint64, errno unix.Errno) error {
	r := notifResp{ID: id, Error: -int32(errno)}
	_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), seccompIoctlNotifSend, uintptr(unsafe.Pointer(&r)))
	if e != 0 && e != unix.ENOENT {
		return fmt.Errorf("answering seccomp notification: %w", e)
	}
	return nil
}
