package traditional

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hullvm/hull/internal/kernel"
	"github.com/hullvm/hull/internal/netgw"
	"github.com/hullvm/hull/internal/vmm/qemu"
)

// VMConfig is one boot of the traditional VM.
type VMConfig struct {
	QEMU   string // qemu-system-x86_64
	Accel  string // qemu.AccelKVM or qemu.AccelTCG
	Kernel string // a file QEMU can load (kernel.Bundle.BootKernel)
	// Boot are the kernel bundle's boot hints (no ACPI, extra command
	// line words), applied as hull's runner applies them.
	Boot      kernel.Boot
	Initrd    string // the stage-1 initramfs
	Disk      string // the ext4 root image; attached with snapshot=on
	App       string // compare.app: redis, http, guestinfo, redteam
	TSCkHz    int64  // for tsc_early_khz under TCG, as hull passes it; 0 for none
	MemoryMiB int64
	CPUs      int
	// HostPort on 127.0.0.1 forwards to GuestPort on the guest (0: none).
	HostPort, GuestPort int
	// SockDir (mode 0700) holds the unix sockets of the network gateway
	// and of the virtio console hull's machine has for its control port
	// (the traditional guest leaves that one unused).
	SockDir string
}

// GatewayMTU is the guest link's MTU with the gateway, the value hull's
// runner gives its own VMs (the study checks that the two QEMU command
// lines agree).
const GatewayMTU = 65520

func (c VMConfig) netSock() string { return filepath.Join(c.SockDir, "net.sock") }

// Cmdline is the kernel command line: hull's console and panic settings
// and the bundle's own words, exactly as hull's runner passes them, then
// what a Debian server's boot loader passes (root=, rw), then the app
// for the init script.
func (c VMConfig) Cmdline() string {
	parts := []string{"console=ttyS0", "panic=-1", "reboot=t", "sysctl.vm.overcommit_memory=1", "quiet", "loglevel=1"}
	if c.TSCkHz > 0 && c.Accel == qemu.AccelTCG {
		parts = append(parts, fmt.Sprintf("tsc_early_khz=%d", c.TSCkHz))
	}
	parts = append(parts, c.Boot.Cmdline...)
	return strings.Join(append(parts, "root=/dev/vda", "rw", "compare.app="+c.App), " ")
}

// Args is the QEMU argv (without the binary): hull's machine from
// qemu.Args — same machine type, devices, sandbox, and a NIC joined to a
// gateway like hull's — plus the root disk.
func Args(c VMConfig) []string {
	qc := qemu.Config{
		Binary: c.QEMU, Accel: c.Accel, Name: "traditional",
		Kernel: c.Kernel, Initrd: c.Initrd, Cmdline: c.Cmdline(),
		MemoryMiB: c.MemoryMiB, CPUs: c.CPUs, NoACPI: c.Boot.NoACPI,
		ControlSock: filepath.Join(c.SockDir, "ctl.sock"),
		Net:         qemu.NetStream, NetSock: c.netSock(), MTU: GatewayMTU,
	}
	a := qemu.Args(qc)
	return append(a,
		"-drive", "file="+strings.ReplaceAll(c.Disk, ",", ",,")+",if=none,id=root,format=raw,snapshot=on",
		"-device", "virtio-blk-device,drive=root")
}

// NIC describes the network of a QEMU argv — its -netdev and virtio-net
// -device options, with the per-instance socket path shown as SOCKET —
// so the NICs of two VMs compare equal when they are alike. It is ""
// when the argv has neither.
func NIC(argv []string) string {
	var parts []string
	for i := 0; i+1 < len(argv); i++ {
		if argv[i] == "-netdev" || argv[i] == "-device" && strings.HasPrefix(argv[i+1], "virtio-net-device,") {
			parts = append(parts, argv[i]+" "+sockPath.ReplaceAllString(argv[i+1], "${1}SOCKET"))
		}
	}
	return strings.Join(parts, " ")
}

// sockPath matches a unix socket path in a -netdev stream or -chardev
// socket value.
var sockPath = regexp.MustCompile(`((?:addr\.path|,path)=)(?:[^,]|,,)*`)

// VM is a running traditional VM.
type VM struct {
	cmd     *exec.Cmd
	Started time.Time
	done    chan struct{}

	mu      sync.Mutex
	console strings.Builder
	stderr  strings.Builder

	listeners []*net.UnixListener
	conns     []net.Conn
	gw        *netgw.Gateway
}

// Boot starts the VM's network gateway and QEMU and returns once they
// run; the console (the serial port) is collected for Console and
// WaitConsole. Started is the moment before the gateway starts, which
// boot times count from, as they count from hull run's start on the
// other side.
//
// The gateway is hull's (package netgw), set up as hull run sets up its
// own with no egress rules: the forward on 127.0.0.1, nothing out.
func Boot(ctx context.Context, c VMConfig) (*VM, error) {
	v := &VM{done: make(chan struct{}), Started: time.Now()}
	ok := false
	defer func() {
		if !ok {
			v.closeSockets()
		}
	}()
	gc := netgw.Config{Listen: c.netSock(), Hostname: "traditional", MTU: GatewayMTU}
	if c.HostPort > 0 {
		gc.Forwards = []netgw.Forward{{Proto: "tcp", Host: netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(c.HostPort)), GuestPort: uint16(c.GuestPort)}}
	}
	os.Remove(gc.Listen)
	gw, err := netgw.Start(context.WithoutCancel(ctx), gc)
	if err != nil {
		return nil, fmt.Errorf("traditional VM gateway: %w", err)
	}
	v.gw = gw
	for _, name := range []string{"ctl.sock"} {
		p := filepath.Join(c.SockDir, name)
		os.Remove(p)
		l, err := net.ListenUnix("unix", &net.UnixAddr{Name: p, Net: "unix"})
		if err != nil {
			return nil, fmt.Errorf("traditional VM socket: %w", err)
		}
		v.listeners = append(v.listeners, l)
		go func() {
			// Hold QEMU's connection; nothing is said on this port.
			if conn, err := l.Accept(); err == nil {
				v.mu.Lock()
				v.conns = append(v.conns, conn)
				v.mu.Unlock()
			}
		}()
	}
	cmd := exec.Command(c.QEMU, Args(c)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Stdout = writerFunc(func(p []byte) { v.mu.Lock(); v.console.Write(p); v.mu.Unlock() })
	cmd.Stderr = writerFunc(func(p []byte) {
		v.mu.Lock()
		if v.stderr.Len() < 64<<10 {
			v.stderr.Write(p)
		}
		v.mu.Unlock()
	})
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting qemu: %w", err)
	}
	v.cmd = cmd
	go func() {
		cmd.Wait() // the exit status says nothing the console does not
		close(v.done)
	}()
	ok = true
	return v, nil
}

type writerFunc func([]byte)

func (f writerFunc) Write(p []byte) (int, error) { f(p); return len(p), nil }

// PID is QEMU's process id.
func (v *VM) PID() int { return v.cmd.Process.Pid }

// Exited is closed when QEMU has exited.
func (v *VM) Exited() <-chan struct{} { return v.done }

// Console returns everything the guest printed on its serial console.
func (v *VM) Console() string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.console.String()
}

// Stderr returns QEMU's own messages.
func (v *VM) Stderr() string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.stderr.String()
}

// ErrVMExited is returned by WaitConsole when QEMU exited first.
var ErrVMExited = errors.New("the traditional VM exited")

// WaitConsole waits until the console shows marker, QEMU exits
// (ErrVMExited) or ctx ends.
func (v *VM) WaitConsole(ctx context.Context, marker string) error {
	for {
		if strings.Contains(v.Console(), marker) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %q on the traditional VM's console: %w", marker, ctx.Err())
		case <-v.done:
			if strings.Contains(v.Console(), marker) {
				return nil
			}
			return ErrVMExited
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Wait waits for QEMU to exit or ctx to end.
func (v *VM) Wait(ctx context.Context) error {
	select {
	case <-v.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Stop ends the VM (SIGTERM, then SIGKILL after 10 s) and releases its
// sockets. It is safe to call after QEMU exited by itself.
func (v *VM) Stop() {
	defer v.closeSockets()
	select {
	case <-v.done:
		return
	default:
	}
	v.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-v.done:
	case <-time.After(10 * time.Second):
		v.cmd.Process.Kill()
		<-v.done
	}
}

func (v *VM) closeSockets() {
	if v.gw != nil {
		v.gw.Close()
	}
	for _, l := range v.listeners {
		l.Close()
	}
	v.mu.Lock()
	for _, c := range v.conns {
		c.Close()
	}
	v.mu.Unlock()
}

// Words of the kernel command line that differ between the two VMs by
// design: the boot's own (console verbosity, the host's TSC rate) and the
// traditional VM's root disk and app.
var ownWords = []string{"hull.verbose=", "quiet", "loglevel=", "tsc_early_khz=", "root=", "rw", "compare.app="}

// flagOnly are the QEMU options hull's machine uses that take no value.
var flagOnly = map[string]bool{"-nodefaults": true, "-no-user-config": true, "-nographic": true, "-no-reboot": true}

// Differences compares a hull VM's QEMU argv (as hull run --verbose
// prints it, binary first) with the traditional VM's Args and lists what
// differs besides what must: names, kernel and initrd files, disks,
// per-instance socket paths and the words in ownWords. The study fails
// on any difference, so "the same machine and kernel command line" is
// checked, not assumed, when hull's runner changes.
func Differences(hullArgv, tradArgs []string) []string {
	if len(hullArgv) == 0 {
		return []string{"no hull QEMU command line to compare"}
	}
	hm, hc := machine(hullArgv[1:])
	tm, tc := machine(tradArgs)
	var diff []string
	if h, t := strings.Join(hm, " "), strings.Join(tm, " "); h != t {
		diff = append(diff, fmt.Sprintf("QEMU options: hull %q, traditional %q", h, t))
	}
	if h, t := strings.Join(hc, " "), strings.Join(tc, " "); h != t {
		diff = append(diff, fmt.Sprintf("kernel command line: hull %q, traditional %q", h, t))
	}
	return diff
}

// machine splits an argv into its comparable QEMU options and kernel
// command-line words (see Differences).
func machine(args []string) (opts, cmdline []string) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if flagOnly[a] || i+1 == len(args) {
			opts = append(opts, a)
			continue
		}
		v := args[i+1]
		i++
		switch {
		case a == "-name" || a == "-kernel" || a == "-initrd" || a == "-drive":
		case a == "-device" && strings.HasPrefix(v, "virtio-blk-device,"):
		case a == "-append":
			for _, w := range strings.Fields(v) {
				if !slices.ContainsFunc(ownWords, func(o string) bool { return w == o || strings.HasSuffix(o, "=") && strings.HasPrefix(w, o) }) {
					cmdline = append(cmdline, w)
				}
			}
		default:
			opts = append(opts, a+" "+sockPath.ReplaceAllString(v, "${1}SOCKET"))
		}
	}
	return opts, cmdline
}
