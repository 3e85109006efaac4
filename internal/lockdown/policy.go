// Package lockdown holds the app's confinement as data — which syscalls
// the seccomp filter refuses, which stay allowed under conditions — and
// compiles it to a classic-BPF seccomp program. Applying it (and the
// capability, landlock and rlimit steps) is in the _linux files.
//
// The guarantee: once the app's own exec has happened, no process in the
// guest can start another program or another process. execve is always
// refused; execveat is allowed only in the one form the init uses for the
// app's own exec (a descriptor number the app can never hold); fork, vfork
// and clone without CLONE_THREAD are refused, clone3 answers ENOSYS so
// libc falls back to clone. Tracing, module loading, mounting, kexec,
// reboot, BPF, perf, userfaultfd, keyrings, io_uring, namespaces and
// memfd_create (unless declared) are refused too. Refusals that a user
// should hear about go to the init through a seccomp user-notification
// listener, which reports them and answers EPERM; when no listener is
// available the filter answers EPERM by itself.
//
// The package is shared by the guest init and tests; it imports no host
// code.
package lockdown

import (
	"fmt"
	"sort"

	"golang.org/x/sys/unix"
)

// ActionKind is what the filter does with a matching syscall.
type ActionKind int

// Action kinds.
const (
	Allow  ActionKind = iota
	Errno             // fail with Action.Errno
	Notify            // ask the init (reported, then EPERM)
	Kill              // kill the process
)

// Action is a filter verdict.
type Action struct {
	Kind  ActionKind
	Errno int
}

// Verdicts used by the policy.
var (
	ActAllow  = Action{Kind: Allow}
	ActNotify = Action{Kind: Notify}
	ActENOSYS = Action{Kind: Errno, Errno: int(unix.ENOSYS)}
	ActEPERM  = Action{Kind: Errno, Errno: int(unix.EPERM)}
)

// CondOp compares a syscall argument.
type CondOp int

// Comparison operators.
const (
	Eq      CondOp = iota // arg == Value
	MaskSet               // arg & Value != 0
)

// Cond is one test on a syscall argument (0-5, full 64 bits).
type Cond struct {
	Arg   int
	Op    CondOp
	Value uint64
}

// Rule gives syscall Nr the action Then when all If conditions hold (or
// when there are none), and Else otherwise.
type Rule struct {
	Name string
	Nr   int
	If   []Cond
	Then Action
	Else Action
	// Why is shown when the app trips over the rule.
	Why string
}

// Options adjust the policy to what the spec declared.
type Options struct {
	// ExecFD is the only descriptor execveat may run (with AT_EMPTY_PATH).
	ExecFD int
	// AllowMemfd permits memfd_create (some JITs need it).
	AllowMemfd bool
}

// Policy returns the rules for an app.
func Policy(o Options) []Rule {
	rules := []Rule{
		{Name: "execve", Nr: unix.SYS_EXECVE, Then: ActNotify, Why: "starting another program is not allowed"},
		{Name: "execveat", Nr: unix.SYS_EXECVEAT,
			If:   []Cond{{Arg: 0, Op: Eq, Value: uint64(o.ExecFD)}, {Arg: 4, Op: Eq, Value: unix.AT_EMPTY_PATH}},
			Then: ActAllow, Else: ActNotify, Why: "starting another program is not allowed"},
		{Name: "fork", Nr: unix.SYS_FORK, Then: ActNotify, Why: "starting another process is not allowed"},
		{Name: "vfork", Nr: unix.SYS_VFORK, Then: ActNotify, Why: "starting another process is not allowed"},
		{Name: "clone", Nr: unix.SYS_CLONE,
			If:   []Cond{{Arg: 0, Op: MaskSet, Value: unix.CLONE_THREAD}},
			Then: ActAllow, Else: ActNotify, Why: "starting another process is not allowed (threads are fine)"},
		// clone3 passes its flags in memory the filter cannot read;
		// ENOSYS makes glibc and Go fall back to clone, which it can.
		{Name: "clone3", Nr: unix.SYS_CLONE3, Then: ActENOSYS},
		// personality(0xffffffff) only queries; other values can turn on
		// READ_IMPLIES_EXEC and similar.
		{Name: "personality", Nr: unix.SYS_PERSONALITY,
			If: []Cond{{Arg: 0, Op: Eq, Value: 0xffffffff}}, Then: ActAllow, Else: ActNotify,
			Why: "changing the execution domain is not allowed"},
	}
	deny := func(why string, names ...string) {
		for _, n := range names {
			nr, ok := syscallNumbers[n]
			if !ok {
				continue // TestPolicyNames keeps this table complete
			}
			rules = append(rules, Rule{Name: n, Nr: nr, Then: ActNotify, Why: why})
		}
	}
	deny("tracing other processes is not allowed", "ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd", "kcmp")
	deny("loading kernel code is not allowed", "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load", "bpf")
	deny("changing mounts is not allowed", "mount", "umount2", "pivot_root", "chroot", "fsopen", "fsconfig", "fsmount", "fspick",
		"move_mount", "open_tree", "mount_setattr", "open_by_handle_at", "name_to_handle_at", "quotactl")
	deny("namespaces are not allowed", "unshare", "setns")
	deny("power and system control are not allowed", "reboot", "swapon", "swapoff", "acct", "syslog", "vhangup",
		"settimeofday", "clock_settime", "clock_adjtime", "adjtimex", "sethostname", "setdomainname", "iopl", "ioperm")
	deny("performance monitoring is not allowed", "perf_event_open")
	deny("userfaultfd is not allowed", "userfaultfd")
	deny("kernel keyrings are not allowed", "keyctl", "add_key", "request_key")
	deny("io_uring is not allowed", "io_uring_setup", "io_uring_enter", "io_uring_register")
	deny("fanotify is not allowed", "fanotify_init")
	deny("obsolete syscall", "uselib", "nfsservctl", "lookup_dcookie")
	if !o.AllowMemfd {
		deny("memfd_create is not allowed (declare it if the app needs it)", "memfd_create")
	}
	sort.SliceStable(rules, func(i, j int) bool { return rules[i].Nr < rules[j].Nr })
	return rules
}

// Explain returns the rule for a syscall number, for reports.
func Explain(rules []Rule, nr int) (Rule, bool) {
	for _, r := range rules {
		if r.Nr == nr {
			return r, true
		}
	}
	return Rule{}, false
}

// SyscallName names an x86-64 syscall number known to the policy.
func SyscallName(nr int) string {
	for n, v := range syscallNumbers {
		if v == nr {
			return n
		}
	}
	return fmt.Sprintf("syscall %d", nr)
}

var syscallNumbers = map[string]int{
	"execve": unix.SYS_EXECVE, "execveat": unix.SYS_EXECVEAT, "fork": unix.SYS_FORK, "vfork": unix.SYS_VFORK,
	"clone": unix.SYS_CLONE, "clone3": unix.SYS_CLONE3, "personality": unix.SYS_PERSONALITY,
	"ptrace": unix.SYS_PTRACE, "process_vm_readv": unix.SYS_PROCESS_VM_READV, "process_vm_writev": unix.SYS_PROCESS_VM_WRITEV,
	"pidfd_getfd": unix.SYS_PIDFD_GETFD, "kcmp": unix.SYS_KCMP,
	"init_module": unix.SYS_INIT_MODULE, "finit_module": unix.SYS_FINIT_MODULE, "delete_module": unix.SYS_DELETE_MODULE,
	"kexec_load": unix.SYS_KEXEC_LOAD, "kexec_file_load": unix.SYS_KEXEC_FILE_LOAD, "bpf": unix.SYS_BPF,
	"mount": unix.SYS_MOUNT, "umount2": unix.SYS_UMOUNT2, "pivot_root": unix.SYS_PIVOT_ROOT, "chroot": unix.SYS_CHROOT,
	"fsopen": unix.SYS_FSOPEN, "fsconfig": unix.SYS_FSCONFIG, "fsmount": unix.SYS_FSMOUNT, "fspick": unix.SYS_FSPICK,
	"move_mount": unix.SYS_MOVE_MOUNT, "open_tree": unix.SYS_OPEN_TREE, "mount_setattr": unix.SYS_MOUNT_SETATTR,
	"open_by_handle_at": unix.SYS_OPEN_BY_HANDLE_AT, "name_to_handle_at": unix.SYS_NAME_TO_HANDLE_AT, "quotactl": unix.SYS_QUOTACTL,
	"unshare": unix.SYS_UNSHARE, "setns": unix.SYS_SETNS,
	"reboot": unix.SYS_REBOOT, "swapon": unix.SYS_SWAPON, "swapoff": unix.SYS_SWAPOFF, "acct": unix.SYS_ACCT,
	"syslog": unix.SYS_SYSLOG, "vhangup": unix.SYS_VHANGUP, "settimeofday": unix.SYS_SETTIMEOFDAY,
	"clock_settime": unix.SYS_CLOCK_SETTIME, "clock_adjtime": unix.SYS_CLOCK_ADJTIME, "adjtimex": unix.SYS_ADJTIMEX,
	"sethostname": unix.SYS_SETHOSTNAME, "setdomainname": unix.SYS_SETDOMAINNAME, "iopl": unix.SYS_IOPL, "ioperm": unix.SYS_IOPERM,
	"perf_event_open": unix.SYS_PERF_EVENT_OPEN, "userfaultfd": unix.SYS_USERFAULTFD,
	"keyctl": unix.SYS_KEYCTL, "add_key": unix.SYS_ADD_KEY, "request_key": unix.SYS_REQUEST_KEY,
	"io_uring_setup": unix.SYS_IO_URING_SETUP, "io_uring_enter": unix.SYS_IO_URING_ENTER, "io_uring_register": unix.SYS_IO_URING_REGISTER,
	"fanotify_init": unix.SYS_FANOTIFY_INIT, "uselib": unix.SYS_USELIB, "nfsservctl": unix.SYS_NFSSERVCTL,
	"lookup_dcookie": unix.SYS_LOOKUP_DCOOKIE, "memfd_create": unix.SYS_MEMFD_CREATE,
}
