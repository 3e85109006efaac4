package lockdown

import (
	"encoding/binary"
	"fmt"

	"golang.org/x/sys/unix"
)

// Instruction is one classic-BPF instruction (struct sock_filter).
type Instruction struct {
	Code uint16
	Jt   uint8
	Jf   uint8
	K    uint32
}

// seccomp_data layout (linux/seccomp.h).
const (
	offNr   = 0
	offArch = 4
	offArgs = 16
)

// auditArchX8664 is AUDIT_ARCH_X86_64: EM_X86_64 | 64-bit | little-endian.
const auditArchX8664 = 0xc000003e

// x32SyscallBit marks x32-ABI syscall numbers, which the filter refuses
// wholesale rather than mapping each.
const x32SyscallBit = 0x40000000

// seccomp return values (linux/seccomp.h).
const (
	retKillProcess = 0x80000000
	retErrno       = 0x00050000
	retUserNotif   = 0x7fc00000
	retAllow       = 0x7fff0000
)

func ret(a Action, notify bool) Instruction {
	k := uint32(retAllow)
	switch a.Kind {
	case Errno:
		k = retErrno | uint32(a.Errno)&0xffff
	case Notify:
		k = retUserNotif
		if !notify {
			k = retErrno | uint32(unix.EPERM)
		}
	case Kill:
		k = retKillProcess
	}
	return Instruction{Code: unix.BPF_RET | unix.BPF_K, K: k}
}

func load(off uint32) Instruction {
	return Instruction{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: off}
}

// Compile turns rules into a seccomp program for x86-64. With notify
// false, Notify verdicts become EPERM (no listener to ask).
func Compile(rules []Rule, notify bool) ([]Instruction, error) {
	prog := []Instruction{
		load(offArch),
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: auditArchX8664, Jt: 1},
		ret(Action{Kind: Kill}, notify),
		load(offNr),
		{Code: unix.BPF_JMP | unix.BPF_JSET | unix.BPF_K, K: x32SyscallBit, Jf: 1},
		ret(ActENOSYS, notify),
	}
	for _, r := range rules {
		block, err := ruleBlock(r, notify)
		if err != nil {
			return nil, err
		}
		if len(block) > 255 {
			return nil, fmt.Errorf("lockdown: rule %s too long", r.Name)
		}
		// The accumulator still holds the syscall number here: every
		// block ends in a return, so no block falls through.
		prog = append(prog, Instruction{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: uint32(r.Nr), Jf: uint8(len(block))})
		prog = append(prog, block...)
	}
	prog = append(prog, ret(ActAllow, notify))
	if len(prog) > 4096 {
		return nil, fmt.Errorf("lockdown: filter has %d instructions, the kernel takes 4096", len(prog))
	}
	return prog, nil
}

// ruleBlock emits: for each condition, checks that jump to the Else
// return on failure; then the Then return.
func ruleBlock(r Rule, notify bool) ([]Instruction, error) {
	if len(r.If) == 0 {
		return []Instruction{ret(r.Then, notify)}, nil
	}
	var checks [][]Instruction
	for _, c := range r.If {
		if c.Arg < 0 || c.Arg > 5 {
			return nil, fmt.Errorf("lockdown: rule %s: argument %d out of range", r.Name, c.Arg)
		}
		lo := uint32(offArgs + 8*c.Arg)
		switch c.Op {
		case Eq:
			checks = append(checks, []Instruction{
				load(lo), {Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: uint32(c.Value)}, // jf → else
				load(lo + 4), {Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: uint32(c.Value >> 32)},
			})
		case MaskSet:
			if c.Value>>32 != 0 {
				return nil, fmt.Errorf("lockdown: rule %s: mask above 32 bits unsupported", r.Name)
			}
			checks = append(checks, []Instruction{
				load(lo), {Code: unix.BPF_JMP | unix.BPF_JSET | unix.BPF_K, K: uint32(c.Value)},
			})
		default:
			return nil, fmt.Errorf("lockdown: rule %s: unknown operator", r.Name)
		}
	}
	var out []Instruction
	for _, chk := range checks {
		out = append(out, chk...)
	}
	out = append(out, ret(r.Then, notify), ret(r.Else, notify))
	// Point every failed comparison at the final Else return.
	elseIdx := len(out) - 1
	for i := range out {
		if out[i].Code&0x07 == unix.BPF_JMP && out[i].Code != unix.BPF_JMP|unix.BPF_JA {
			out[i].Jf = uint8(elseIdx - i - 1)
		}
	}
	return out, nil
}

// Run evaluates a program against one syscall, as the kernel would. It
// implements only the instructions Compile emits; tests use it to check
// the policy without installing it.
func Run(prog []Instruction, arch uint32, nr int, args [6]uint64) (uint32, error) {
	var data [64]byte
	binary.LittleEndian.PutUint32(data[offNr:], uint32(nr))
	binary.LittleEndian.PutUint32(data[offArch:], arch)
	for i, a := range args {
		binary.LittleEndian.PutUint64(data[offArgs+8*i:], a)
	}
	var acc uint32
	for pc := 0; pc < len(prog); pc++ {
		in := prog[pc]
		switch in.Code {
		case unix.BPF_LD | unix.BPF_W | unix.BPF_ABS:
			if in.K+4 > uint32(len(data)) {
				return 0, fmt.Errorf("load out of range at %d", pc)
			}
			acc = binary.LittleEndian.Uint32(data[in.K:])
		case unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K:
			if acc == in.K {
				pc += int(in.Jt)
			} else {
				pc += int(in.Jf)
			}
		case unix.BPF_JMP | unix.BPF_JSET | unix.BPF_K:
			if acc&in.K != 0 {
				pc += int(in.Jt)
			} else {
				pc += int(in.Jf)
			}
		case unix.BPF_RET | unix.BPF_K:
			return in.K, nil
		default:
			return 0, fmt.Errorf("unsupported instruction %#x at %d", in.Code, pc)
		}
	}
	return 0, fmt.Errorf("program fell off the end")
}
