package lockdown_test

import (
	"fmt"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/hullvm/hull/internal/lockdown"
)

// seccomp return values (linux/seccomp.h), written out so a wrong
// constant in the package cannot agree with itself.
const (
	retKill   = 0x80000000
	retNotify = 0x7fc00000
	retAllow  = 0x7fff0000
	retEPERM  = 0x00050000 | 1
	retENOSYS = 0x00050000 | 38

	archX8664 = 0xc000003e
	archI386  = 0x40000003
	x32Bit    = 0x40000000
	atEmpty   = 0x1000
	execFD    = 65536
)

func compile(t *testing.T, o lockdown.Options, notify bool) []lockdown.Instruction {
	t.Helper()
	prog, err := lockdown.Compile(lockdown.Policy(o), notify)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return prog
}

func TestFilterVerdicts(t *testing.T) {
	type call struct {
		name string
		arch uint32
		nr   int
		args [6]uint64
	}
	sc := func(name string, nr int, args ...uint64) call {
		c := call{name: name, arch: archX8664, nr: nr}
		copy(c.args[:], args)
		return c
	}
	// denied is the verdict of a refusal the user should hear about.
	const denied = 0
	tests := []struct {
		call  call
		memfd bool
		want  uint32 // denied → notify or EPERM depending on mode
	}{
		{sc("execve", unix.SYS_EXECVE), false, denied},
		{sc("execveat exec fd", unix.SYS_EXECVEAT, execFD, 0, 0, 0, atEmpty), false, retAllow},
		{sc("execveat other fd", unix.SYS_EXECVEAT, 3, 0, 0, 0, atEmpty), false, denied},
		{sc("execveat exec fd minus one", unix.SYS_EXECVEAT, execFD-1, 0, 0, 0, atEmpty), false, denied},
		{sc("execveat AT_FDCWD", unix.SYS_EXECVEAT, uint64(0xffffff9c), 0, 0, 0, atEmpty), false, denied},
		{sc("execveat no flags", unix.SYS_EXECVEAT, execFD, 0, 0, 0, 0), false, denied},
		{sc("execveat extra flag", unix.SYS_EXECVEAT, execFD, 0, 0, 0, atEmpty|unix.AT_SYMLINK_NOFOLLOW), false, denied},
		{sc("execveat fd high bits", unix.SYS_EXECVEAT, execFD|1<<32, 0, 0, 0, atEmpty), false, denied},
		{sc("execveat flags high bits", unix.SYS_EXECVEAT, execFD, 0, 0, 0, atEmpty|1<<32), false, denied},
		{sc("clone thread", unix.SYS_CLONE, unix.CLONE_VM|unix.CLONE_FS|unix.CLONE_FILES|unix.CLONE_SIGHAND|unix.CLONE_THREAD|unix.CLONE_SYSVSEM), false, retAllow},
		{sc("clone process", unix.SYS_CLONE, uint64(unix.SIGCHLD)), false, denied},
		{sc("clone vfork", unix.SYS_CLONE, unix.CLONE_VM|unix.CLONE_VFORK|uint64(unix.SIGCHLD)), false, denied},
		{sc("clone thread bit only in high half", unix.SYS_CLONE, uint64(unix.CLONE_THREAD)<<32), false, denied},
		{sc("clone3", unix.SYS_CLONE3), false, retENOSYS},
		{sc("fork", unix.SYS_FORK), false, denied},
		{sc("vfork", unix.SYS_VFORK), false, denied},
		{sc("ptrace", unix.SYS_PTRACE), false, denied},
		{sc("mount", unix.SYS_MOUNT), false, denied},
		{sc("finit_module", unix.SYS_FINIT_MODULE), false, denied},
		{sc("init_module", unix.SYS_INIT_MODULE), false, denied},
		{sc("bpf", unix.SYS_BPF), false, denied},
		{sc("io_uring_setup", unix.SYS_IO_URING_SETUP), false, denied},
		{sc("unshare", unix.SYS_UNSHARE), false, denied},
		{sc("kexec_load", unix.SYS_KEXEC_LOAD), false, denied},
		{sc("reboot", unix.SYS_REBOOT), false, denied},
		{sc("memfd_create", unix.SYS_MEMFD_CREATE), false, denied},
		{sc("memfd_create declared", unix.SYS_MEMFD_CREATE), true, retAllow},
		{sc("personality query", unix.SYS_PERSONALITY, 0xffffffff), false, retAllow},
		{sc("personality READ_IMPLIES_EXEC", unix.SYS_PERSONALITY, 0x0400000), false, denied},
		{sc("read", unix.SYS_READ, 0, 0, 10), false, retAllow},
		{sc("write", unix.SYS_WRITE, 1, 0, 10), false, retAllow},
		{sc("openat", unix.SYS_OPENAT, uint64(0xffffff9c), 0, 0), false, retAllow},
		{sc("mmap", unix.SYS_MMAP, 0, 4096, unix.PROT_READ|unix.PROT_EXEC), false, retAllow},
		{sc("futex", unix.SYS_FUTEX), false, retAllow},
		{sc("exit_group", unix.SYS_EXIT_GROUP), false, retAllow},
		{sc("syscall past the table", 1000), false, retAllow},
		{call{name: "i386 arch", arch: archI386, nr: 11}, false, retKill},
		{call{name: "i386 arch, read", arch: archI386, nr: unix.SYS_READ}, false, retKill},
		{call{name: "x32 execve", arch: archX8664, nr: unix.SYS_EXECVE | x32Bit}, false, retENOSYS},
		{call{name: "x32 read", arch: archX8664, nr: unix.SYS_READ | x32Bit}, false, retENOSYS},
	}
	for _, notify := range []bool{true, false} {
		deniedAs := uint32(retEPERM)
		if notify {
			deniedAs = retNotify
		}
		for _, tt := range tests {
			t.Run(fmt.Sprintf("notify=%v/%s", notify, tt.call.name), func(t *testing.T) {
				prog := compile(t, lockdown.Options{ExecFD: execFD, AllowMemfd: tt.memfd}, notify)
				got, err := lockdown.Run(prog, tt.call.arch, tt.call.nr, tt.call.args)
				if err != nil {
					t.Fatalf("Run: %v", err)
				}
				want := tt.want
				if want == denied {
					want = deniedAs
				}
				if got != want {
					t.Errorf("%s(%#x) = %#x, want %#x", tt.call.name, tt.call.args, got, want)
				}
			})
		}
	}
}

// TestRulesWithoutConditions checks every unconditional rule of the
// policy gives its Then verdict, whatever the arguments.
func TestRulesWithoutConditions(t *testing.T) {
	rules := lockdown.Policy(lockdown.Options{ExecFD: execFD})
	prog := compile(t, lockdown.Options{ExecFD: execFD}, true)
	for _, r := range rules {
		if len(r.If) != 0 {
			continue
		}
		want := uint32(retNotify)
		switch r.Then {
		case lockdown.ActENOSYS:
			want = retENOSYS
		case lockdown.ActAllow:
			want = retAllow
		}
		for _, args := range [][6]uint64{{}, {^uint64(0), ^uint64(0), ^uint64(0), ^uint64(0), ^uint64(0), ^uint64(0)}} {
			got, err := lockdown.Run(prog, archX8664, r.Nr, args)
			if err != nil || got != want {
				t.Errorf("%s(%#x) = %#x, %v; want %#x", r.Name, args[0], got, err, want)
			}
		}
		if r.Then == lockdown.ActNotify && r.Why == "" {
			t.Errorf("rule %s refuses with a notification but has no Why for the report", r.Name)
		}
	}
}

// TestProgramShape checks what the kernel's verifier checks: every jump
// lands inside the program, the program ends in a return and fits the
// kernel's limit.
func TestProgramShape(t *testing.T) {
	for _, o := range []lockdown.Options{{ExecFD: execFD}, {ExecFD: execFD, AllowMemfd: true}} {
		for _, notify := range []bool{true, false} {
			prog := compile(t, o, notify)
			if len(prog) > 4096 || len(prog) == 0 {
				t.Fatalf("program has %d instructions, want 1-4096", len(prog))
			}
			for pc, in := range prog {
				if in.Code&0x07 != unix.BPF_JMP {
					continue
				}
				for _, off := range []uint8{in.Jt, in.Jf} {
					if target := pc + 1 + int(off); target >= len(prog) {
						t.Errorf("instruction %d jumps to %d, past the end (%d)", pc, target, len(prog))
					}
				}
			}
			if last := prog[len(prog)-1]; last.Code != unix.BPF_RET|unix.BPF_K || last.K != retAllow {
				t.Errorf("last instruction = %+v, want RET ALLOW", last)
			}
		}
	}
}

func TestCompileRejects(t *testing.T) {
	tests := []struct {
		name string
		rule lockdown.Rule
		want string
	}{
		{"argument 6", lockdown.Rule{Name: "x", Nr: 1, If: []lockdown.Cond{{Arg: 6, Op: lockdown.Eq}}}, "argument"},
		{"negative argument", lockdown.Rule{Name: "x", Nr: 1, If: []lockdown.Cond{{Arg: -1, Op: lockdown.Eq}}}, "argument"},
		{"wide mask", lockdown.Rule{Name: "x", Nr: 1, If: []lockdown.Cond{{Arg: 0, Op: lockdown.MaskSet, Value: 1 << 40}}}, "mask"},
		{"unknown operator", lockdown.Rule{Name: "x", Nr: 1, If: []lockdown.Cond{{Arg: 0, Op: lockdown.CondOp(9)}}}, "operator"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := lockdown.Compile([]lockdown.Rule{tt.rule}, true)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Compile = %v, want an error about %s", err, tt.want)
			}
		})
	}
}

func TestExplainAndNames(t *testing.T) {
	rules := lockdown.Policy(lockdown.Options{ExecFD: execFD})
	r, ok := lockdown.Explain(rules, unix.SYS_FORK)
	if !ok || r.Name != "fork" || !strings.Contains(r.Why, "process") {
		t.Errorf("Explain(fork) = %+v, %v; want the fork rule with a reason about processes", r, ok)
	}
	if r, ok := lockdown.Explain(rules, unix.SYS_READ); ok {
		t.Errorf("Explain(read) = %+v, want no rule", r)
	}
	for _, tt := range []struct {
		nr   int
		want string
	}{{unix.SYS_EXECVE, "execve"}, {unix.SYS_EXECVEAT, "execveat"}, {unix.SYS_MEMFD_CREATE, "memfd_create"}, {99999, "syscall 99999"}} {
		if got := lockdown.SyscallName(tt.nr); got != tt.want {
			t.Errorf("SyscallName(%d) = %q, want %q", tt.nr, got, tt.want)
		}
	}
}
