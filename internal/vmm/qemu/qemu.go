// Package qemu builds the QEMU command line for a hull guest and picks the
// accelerator. Args is a pure function of Config (unit-tested, printable
// with Quote for pasting into a shell); starting and supervising the
// process is the runner's job.
//
// The machine is always `-M microvm` with virtio-mmio devices: no PCI, no
// firmware, no display, no default devices, QEMU's own sandbox on (no
// spawning, no privilege changes, no obsolete syscalls). What the guest
// gets is exactly: a serial console for kernel and init messages, a
// virtio console carrying the control protocol and the app's output, the
// read-only app disk, one virtio-net NIC and a virtio-rng.
package qemu

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
)

// Accelerators.
const (
	AccelKVM = "kvm"
	AccelTCG = "tcg"
)

// NetMode says how the NIC reaches the host.
type NetMode int

// Network modes.
const (
	// NetUser is QEMU's user-mode stack with restrict=on: no egress,
	// host forwards only.
	NetUser NetMode = iota
	// NetStream joins a hull gateway over a unix socket.
	NetStream
	// NetNone gives the guest no NIC.
	NetNone
)

// Forward is one host → guest port forward for NetUser.
type Forward struct {
	Proto     string // tcp or udp
	HostIP    string
	HostPort  int
	GuestPort int
}

// Config is everything Args needs.
type Config struct {
	Binary    string // qemu-system-x86_64
	Accel     string // AccelKVM or AccelTCG
	Name      string
	Kernel    string
	Initrd    string
	Cmdline   string
	MemoryMiB int64
	CPUs      int
	// ControlSock is the unix socket QEMU connects the guest's control
	// console to (hull listens on it).
	ControlSock string
	Net         NetMode
	GuestIP     string // for NetUser forwards
	Forwards    []Forward
	NetSock     string // for NetStream
	MAC         string
	// MTU, when set, is advertised to the guest NIC (host_mtu).
	MTU int
	// AppDisk is attached read-only as the first virtio block device.
	AppDisk string
	// NoACPI gives the machine no ACPI tables (the kernel's boot hint).
	// microvm then lists its virtio-mmio devices on the kernel command
	// line itself (auto-kernel-cmdline), so the kernel needs
	// CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES.
	NoACPI bool
}

// Args returns the argv (without the binary) for cfg.
func Args(cfg Config) []string {
	machine := "microvm,x-option-roms=off,isa-serial=on,rtc=on"
	if cfg.NoACPI {
		machine += ",acpi=off"
	}
	a := []string{
		"-name", "hull-" + cfg.Name,
		"-M", machine,
		"-accel", cfg.Accel,
	}
	if cfg.Accel == AccelKVM {
		a = append(a, "-cpu", "host")
	} else {
		// TCG's default CPU model (qemu64) lacks features the kernel then
		// works around at boot; with every feature TCG emulates, a kernel
		// reaches init in about half the time (measured: 0.43 s → 0.20 s
		// to the root mount on the tuned kernel).
		a = append(a, "-cpu", "max")
	}
	a = append(a,
		"-m", strconv.FormatInt(cfg.MemoryMiB, 10)+"M",
		"-smp", strconv.Itoa(cfg.CPUs),
		"-nodefaults", "-no-user-config", "-nographic", "-no-reboot",
		"-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
		"-kernel", cfg.Kernel,
		"-initrd", cfg.Initrd,
		"-append", cfg.Cmdline,
		"-chardev", "stdio,id=con,signal=off",
		"-serial", "chardev:con",
		// One port, no multiport: the guest fills one receive queue
		// (1024 pages under virtio-mmio) instead of one per port plus
		// a control queue.
		"-device", "virtio-serial-device,max_ports=1",
		"-chardev", "socket,id=ctl,path="+escapeOpt(cfg.ControlSock),
		"-device", "virtconsole,chardev=ctl,name=hull.ctl",
		"-object", "rng-random,id=rng0,filename=/dev/urandom",
		"-device", "virtio-rng-device,rng=rng0",
	)
	if cfg.AppDisk != "" {
		// read-only: the guest can never change the stored image.
		a = append(a,
			"-drive", "file="+escapeOpt(cfg.AppDisk)+",if=none,id=app,format=raw,readonly=on",
			"-device", "virtio-blk-device,drive=app")
	}
	mac := cfg.MAC
	if mac == "" {
		mac = "52:54:00:12:34:56"
	}
	switch cfg.Net {
	case NetUser:
		nd := "user,id=n0,restrict=on,ipv6=off,net=10.0.2.0/24,host=10.0.2.2,dns=10.0.2.3"
		for _, f := range cfg.Forwards {
			nd += fmt.Sprintf(",hostfwd=%s:%s:%d-%s:%d", f.Proto, f.HostIP, f.HostPort, cfg.GuestIP, f.GuestPort)
		}
		a = append(a, "-netdev", nd, "-device", netDevice(mac, cfg.MTU))
	case NetStream:
		a = append(a,
			"-netdev", "stream,id=n0,server=off,addr.type=unix,addr.path="+escapeOpt(cfg.NetSock),
			"-device", netDevice(mac, cfg.MTU))
	}
	return a
}

func netDevice(mac string, mtu int) string {
	d := "virtio-net-device,netdev=n0,mac=" + mac
	if mtu > 0 {
		d += ",host_mtu=" + strconv.Itoa(mtu)
	}
	return d
}

// escapeOpt doubles commas, QEMU's escape inside option values.
func escapeOpt(s string) string { return strings.ReplaceAll(s, ",", ",,") }

// Quote renders argv for a POSIX shell.
func Quote(argv []string) string {
	out := make([]string, len(argv))
	for i, s := range argv {
		if s != "" && strings.IndexFunc(s, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_=+,./:@%", r))
		}) < 0 {
			out[i] = s
			continue
		}
		out[i] = "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
	}
	return strings.Join(out, " ")
}

// Binary finds qemu-system-x86_64 (HULL_QEMU overrides).
func Binary() (string, error) {
	if b := os.Getenv("HULL_QEMU"); b != "" {
		return b, nil
	}
	p, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		return "", errors.New("qemu-system-x86_64 not found: install it (apt-get install qemu-system-x86) or set HULL_QEMU")
	}
	return p, nil
}

// ChooseAccel picks the accelerator: forced when want is "kvm" or "tcg";
// otherwise KVM only when the CPU advertises hardware virtualisation and
// /dev/kvm opens read-write, because a nested paravirtual /dev/kvm
// without vmx/svm cannot run ordinary guests. reason explains the pick.
func ChooseAccel(want string) (accel, reason string, err error) {
	switch want {
	case AccelKVM:
		if err := kvmUsable(); err != nil {
			return "", "", fmt.Errorf("--accel kvm: %w", err)
		}
		return AccelKVM, "KVM (forced)", nil
	case AccelTCG:
		return AccelTCG, "software emulation (TCG, forced)", nil
	case "", "auto":
	default:
		return "", "", fmt.Errorf("--accel %q: want kvm, tcg or auto", want)
	}
	if err := kvmUsable(); err != nil {
		return AccelTCG, "software emulation (TCG): " + err.Error(), nil
	}
	return AccelKVM, "KVM", nil
}

func kvmUsable() error {
	if !cpuHasVirt("/proc/cpuinfo") {
		return errors.New("the CPU advertises no vmx/svm")
	}
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("/dev/kvm: %w", err)
	}
	f.Close()
	return nil
}

func cpuHasVirt(cpuinfo string) bool {
	f, err := os.Open(cpuinfo)
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "flags") {
			continue
		}
		for _, fl := range strings.Fields(line) {
			if fl == "vmx" || fl == "svm" {
				return true
			}
		}
		return false
	}
	return false
}
