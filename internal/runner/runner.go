// Package runner boots one image as a VM and supervises it until the app
// ends: it prepares a private instance directory (0700) with the control,
// stdout and stderr sockets, starts QEMU in its own process group (so a
// terminal's Ctrl-C reaches hull, not QEMU) and tied to hull's life,
// speaks the control protocol with the guest init, streams the app's
// output unmixed with console messages, turns stop requests into SIGTERM
// with a grace period, and returns the app's exit status.
//
// Cancelling the context is a graceful stop; closing Options.Kill stops
// the VM at once. Whatever happens, the instance directory and every
// goroutine are gone when Run returns.
package runner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hullvm/hull/internal/control"
	"github.com/hullvm/hull/internal/initramfs"
	"github.com/hullvm/hull/internal/kernel"
	"github.com/hullvm/hull/internal/manifest"
	"github.com/hullvm/hull/internal/netgw"
	"github.com/hullvm/hull/internal/policy"
	"github.com/hullvm/hull/internal/spec"
	"github.com/hullvm/hull/internal/vmm/qemu"
)

// Options describe one run.
type Options struct {
	Name      string
	Image     string // stored (compressed) initramfs
	AppDisk   string // stored app disk (EROFS), attached read-only
	Manifest  *manifest.Manifest
	Kernel    *kernel.Bundle
	MemoryMiB int64
	CPUs      int
	Ports     []spec.Port
	Env       []string // run-time environment, never written to disk
	// Args, when ArgsSet, replace the image's program arguments.
	Args        []string
	ArgsSet     bool
	Accel       string // "", "auto", "kvm", "tcg"
	Verbose     bool
	StopTimeout time.Duration
	// Stdout and Stderr receive the app's output; Log receives hull's
	// own one-line messages.
	Stdout, Stderr, Log io.Writer
	// Kill, when closed, stops the VM at once.
	Kill <-chan struct{}
	// OnEvent, if set, is told of boot milestones (for benchmarks).
	OnEvent func(Event)
	// RuntimeDir is the parent of the instance directory.
	RuntimeDir string
	// KeepCompressed boots the stored initramfs as is, making the guest
	// kernel decompress it; by default the host decompresses it first,
	// which is faster under emulation.
	KeepCompressed bool
	// BootTimeout is how long the guest's init has to say hello before
	// the VM is killed as hung; DefaultBootTimeout when 0.
	BootTimeout time.Duration
	// KernelArgs are appended to the kernel command line last (boot
	// measurements such as initcall_debug; not part of any image).
	KernelArgs []string
	// Network picks the guest's network: NetworkGateway (default), the
	// zero-trust gateway, or NetworkUser, QEMU's user network with no
	// egress at all (kept for comparison and as a fallback).
	Network string
	// Egress and DNSUpstream configure the gateway's policy.
	Egress      []spec.EgressRule
	DNSUpstream string
	// FlowLog receives the gateway's flow log (JSON lines); may be nil.
	FlowLog io.Writer
}

// DefaultBootTimeout is generous: a distribution kernel under software
// emulation on a loaded machine boots in well under 20 s.
const DefaultBootTimeout = 60 * time.Second

// smallGuestMiB: below it, a guest that dies before its init is most
// likely short of memory (the Debian kernel needs ~80 MiB, the tuned one
// ~31 MiB with a Go server).
const smallGuestMiB = 96

// Networks.
const (
	NetworkGateway = "gateway"
	NetworkUser    = "user"
)

// gatewayMTU is the guest link's MTU with the gateway: the device
// advertises it (host_mtu) and the guest driver takes it, so bulk
// transfers move in few large frames instead of many 1500-byte ones.
const gatewayMTU = 65520

// Event is a boot milestone, timed from the launch of QEMU.
type Event struct {
	Name   string        // "qemu", "init", "modules", "network", "root", "started", "listening", "exit"
	At     time.Duration // since launch
	Uptime float64       // guest uptime in seconds, when the guest said
	Detail string
}

// Result is how the run ended.
type Result struct {
	ExitCode int
	Signal   int
	// Killed is set when hull had to kill the VM (grace period over, or
	// a forced stop).
	Killed bool
	Denied []string
}

// ExitError is a VM that ended without the app's exit status.
type ExitError struct {
	Reason  string
	Console string // last console lines
}

func (e *ExitError) Error() string { return e.Reason }

// StartError is an app the init could not start (exit code 126 or 127).
type StartError struct {
	Code int
	Msg  string
}

func (e *StartError) Error() string { return e.Msg }

// maxSockPath is sun_path's capacity on Linux, minus the NUL.
const maxSockPath = 107

// Run boots the VM and waits for the app to end.
func Run(ctx context.Context, o Options) (*Result, error) {
	if o.Log == nil {
		o.Log = io.Discard
	}
	if o.Stdout == nil {
		o.Stdout = io.Discard
	}
	if o.Stderr == nil {
		o.Stderr = io.Discard
	}
	if o.StopTimeout <= 0 {
		o.StopTimeout = 10 * time.Second
	}
	bin, err := qemu.Binary()
	if err != nil {
		return nil, err
	}
	accel, why, err := qemu.ChooseAccel(o.Accel)
	if err != nil {
		return nil, err
	}
	if accel == qemu.AccelTCG && o.Accel != qemu.AccelTCG {
		fmt.Fprintf(o.Log, "hull: using %s; boots are slower than with KVM\n", why)
	}
	if o.Network == "" {
		o.Network = NetworkGateway
	}
	if o.Network != NetworkGateway && o.Network != NetworkUser {
		return nil, fmt.Errorf("--network %q: want gateway or user", o.Network)
	}
	if o.Network == NetworkUser {
		if len(o.Egress) > 0 {
			return nil, errors.New("--network user has no egress at all; egress rules need the gateway network")
		}
		for _, p := range o.Ports {
			if strings.Contains(p.HostIP, ":") {
				return nil, fmt.Errorf("-p %s: QEMU's user network cannot forward from an IPv6 host address; use the gateway network", p)
			}
		}
		if err := checkHostPorts(o.Ports); err != nil {
			return nil, err
		}
	}
	if err := o.Kernel.Verify(); err != nil {
		return nil, fmt.Errorf("kernel %s: %w", o.Kernel.Name, err)
	}
	if err := os.MkdirAll(o.RuntimeDir, 0o700); err != nil {
		return nil, fmt.Errorf("creating runtime dir: %w", err)
	}
	dir, err := os.MkdirTemp(o.RuntimeDir, "i-")
	if err != nil {
		return nil, fmt.Errorf("creating instance dir: %w", err)
	}
	defer os.RemoveAll(dir)
	if len(filepath.Join(dir, "ctl.sock")) > maxSockPath {
		return nil, fmt.Errorf("runtime dir %s is too deep for unix sockets (%d characters max): set XDG_RUNTIME_DIR to a shorter path", o.RuntimeDir, maxSockPath)
	}

	tscCh := make(chan int64, 1)
	go func() { tscCh <- qemu.TSCkHz() }()
	// Unpacking the kernel and the initramfs are the host's two biggest
	// jobs before QEMU starts; they overlap.
	type unpacked struct {
		path string
		err  error
	}
	kernelCh := make(chan unpacked, 1)
	go func() {
		p, err := o.Kernel.BootKernel(dir)
		kernelCh <- unpacked{p, err}
	}()
	kernelFile := ""
	defer func() {
		if kernelFile == "" { // an early return: let the unpacking finish before dir goes
			<-kernelCh
		}
	}()
	initrd := o.Image
	if !o.KeepCompressed {
		initrd = filepath.Join(dir, "initrd")
		if err := decompressTo(o.Image, initrd); err != nil {
			return nil, err
		}
	}
	socks := map[string]*net.UnixListener{}
	for _, name := range []string{"ctl"} {
		l, err := net.ListenUnix("unix", &net.UnixAddr{Name: filepath.Join(dir, name+".sock"), Net: "unix"})
		if err != nil {
			return nil, fmt.Errorf("creating %s socket: %w", name, err)
		}
		defer l.Close()
		socks[name] = l
	}

	k := <-kernelCh
	if k.err != nil {
		kernelFile = "-"
		return nil, k.err
	}
	kernelFile = k.path

	// Overcommit always: Go (hull-init and Go apps) reserves address
	// space far beyond a small guest's RAM, which the default heuristic
	// refuses before anything is touched; redis asks for it too. With one
	// app per VM the OOM killer has nothing else to pick.
	cmdline := []string{"console=ttyS0", "panic=-1", "reboot=t", "sysctl.vm.overcommit_memory=1"}
	if o.Verbose {
		cmdline = append(cmdline, "hull.verbose=1")
	} else {
		cmdline = append(cmdline, "quiet", "loglevel=1")
	}
	if khz := <-tscCh; khz > 0 && accel == qemu.AccelTCG {
		cmdline = append(cmdline, fmt.Sprintf("tsc_early_khz=%d", khz))
	}
	cmdline = append(cmdline, o.Kernel.Boot.Cmdline...) // the kernel bundle's own boot hints
	cmdline = append(cmdline, o.KernelArgs...)
	cfg := qemu.Config{
		Binary: bin, Accel: accel, Name: o.Name,
		Kernel: kernelFile, Initrd: initrd, Cmdline: strings.Join(cmdline, " "),
		MemoryMiB: o.MemoryMiB, CPUs: o.CPUs, NoACPI: o.Kernel.Boot.NoACPI,
		ControlSock: socks["ctl"].Addr().String(),
		Net:         qemu.NetUser, GuestIP: manifest.GuestIP, AppDisk: o.AppDisk,
	}
	var gw *netgw.Gateway
	if o.Network == NetworkUser {
		for _, p := range o.Ports {
			cfg.Forwards = append(cfg.Forwards, qemu.Forward{Proto: p.Proto, HostIP: p.HostIP, HostPort: p.HostPort, GuestPort: p.GuestPort})
		}
	} else {
		// The gateway outlives a graceful stop (the app may still talk
		// while it shuts down) and ends with Run.
		gctx, gcancel := context.WithCancel(context.WithoutCancel(ctx))
		defer gcancel()
		gw, err = startGateway(gctx, o, filepath.Join(dir, "net.sock"))
		if err != nil {
			return nil, err
		}
		defer func() {
			gw.Close()
			if sum := gw.Summary(); sum.Any() {
				fmt.Fprintf(o.Log, "hull: network: %s\n", sum)
			}
		}()
		cfg.Net, cfg.NetSock, cfg.MTU = qemu.NetStream, filepath.Join(dir, "net.sock"), gatewayMTU
	}
	args := qemu.Args(cfg)
	if o.Verbose {
		fmt.Fprintf(o.Log, "hull: %s\n", qemu.Quote(append([]string{bin}, args...)))
	}
	r := &run{o: o, dir: dir, launched: time.Now()}
	return r.boot(ctx, bin, args, socks)
}

// startGateway starts the zero-trust gateway QEMU's NIC will join. Its
// ingress listeners are bound before it returns, so a taken host port is
// reported before anything boots.
func startGateway(ctx context.Context, o Options, sock string) (*netgw.Gateway, error) {
	pol, err := policy.New(o.Egress, policy.Options{})
	if err != nil {
		return nil, err
	}
	cfg := netgw.Config{
		Listen: sock, Policy: pol, Hostname: o.Manifest.Hostname, FlowLog: o.FlowLog, MTU: gatewayMTU,
		OnDeny: func(f netgw.Flow) {
			fmt.Fprintf(o.Log, "hull: denied: %s\n", f)
		},
	}
	if o.Verbose {
		cfg.Logf = func(format string, args ...any) {
			fmt.Fprintf(o.Log, "hull: gateway: "+format+"\n", args...)
		}
	}
	if o.DNSUpstream != "" {
		up, err := spec.ParseHostPort(o.DNSUpstream, 53)
		if err != nil {
			return nil, fmt.Errorf("--dns-upstream %q: %w", o.DNSUpstream, err)
		}
		cfg.DNSUpstream = up
	}
	for _, p := range o.Ports {
		f, err := netgw.ForwardFromSpec(p)
		if err != nil {
			return nil, err
		}
		cfg.Forwards = append(cfg.Forwards, f)
	}
	gw, err := netgw.Start(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("starting the network gateway: %w", err)
	}
	return gw, nil
}

func decompressTo(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("opening image: %w", err)
	}
	defer in.Close()
	rc, _, err := initramfs.Decompress(in)
	if err != nil {
		return fmt.Errorf("image %s: %w", src, err)
	}
	defer rc.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, rc); err != nil {
		out.Close()
		return fmt.Errorf("decompressing image: %w", err)
	}
	return out.Close()
}

// checkHostPorts fails early, naming the port, when a forward's host
// side is taken, instead of letting QEMU fail with a cryptic message.
func checkHostPorts(ports []spec.Port) error {
	for _, p := range ports {
		addr := net.JoinHostPort(p.HostIP, fmt.Sprint(p.HostPort))
		if p.Proto == "udp" {
			c, err := net.ListenPacket("udp", addr)
			if err != nil {
				return fmt.Errorf("-p %s: host port %s/udp is not available: %w", p, addr, unwrapSyscall(err))
			}
			c.Close()
			continue
		}
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("-p %s: host port %s/tcp is not available: %w", p, addr, unwrapSyscall(err))
		}
		l.Close()
	}
	return nil
}

func unwrapSyscall(err error) error {
	var se *os.SyscallError
	if errors.As(err, &se) {
		return se.Err
	}
	return err
}

type run struct {
	o        Options
	dir      string
	launched time.Time
	// helloSeen: the init reached the host; bootTimedOut: it never did.
	helloSeen, bootTimedOut bool
	console                 *tail
	result                  Result
	gotExit                 bool
	startErr                *StartError
	warned                  map[string]bool
}

func (r *run) event(name string, uptime float64, detail string) {
	if r.o.OnEvent != nil {
		r.o.OnEvent(Event{Name: name, At: time.Since(r.launched), Uptime: uptime, Detail: detail})
	}
}

func (r *run) boot(ctx context.Context, bin string, args []string, socks map[string]*net.UnixListener) (*Result, error) {
	cmd := exec.Command(bin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid:   true,            // a terminal's Ctrl-C is hull's to handle
		Pdeathsig: syscall.SIGKILL, // no orphaned VM if hull dies
	}
	conOut, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	var qemuErr strings.Builder
	var qemuErrMu sync.Mutex
	cmd.Stderr = writerFunc(func(p []byte) (int, error) {
		qemuErrMu.Lock()
		defer qemuErrMu.Unlock()
		if qemuErr.Len() < 64<<10 {
			qemuErr.Write(p)
		}
		return len(p), nil
	})
	r.launched = time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting qemu: %w", err)
	}
	r.event("qemu", 0, "")
	exited := make(chan error, 1)
	var wg sync.WaitGroup
	r.console = newTail(64 << 10)
	logFile, _ := os.OpenFile(filepath.Join(r.dir, "console.log"), os.O_WRONLY|os.O_CREATE, 0o600)
	wg.Add(1)
	go func() {
		defer wg.Done()
		var w io.Writer = r.console
		if logFile != nil {
			w = io.MultiWriter(w, logFile)
		}
		if r.o.Verbose {
			w = io.MultiWriter(w, r.o.Log)
		}
		io.Copy(w, conOut)
	}()
	go func() {
		wg.Wait() // console drained: cmd.Wait may close the pipe now
		exited <- cmd.Wait()
	}()

	// QEMU connects to the control socket while starting; accept it
	// concurrently so a QEMU that dies early is noticed.
	conns := map[string]net.Conn{}
	accepted := make(chan error, 1)
	go func() {
		for _, name := range []string{"ctl"} {
			socks[name].SetDeadline(time.Now().Add(30 * time.Second))
			c, err := socks[name].Accept()
			if err != nil {
				accepted <- fmt.Errorf("qemu did not connect the %s port: %w", name, err)
				return
			}
			conns[name] = c
		}
		accepted <- nil
	}()
	select {
	case err := <-accepted:
		if err != nil {
			cmd.Process.Kill()
			<-exited
			return nil, err
		}
	case err := <-exited:
		qemuErrMu.Lock()
		msg := strings.TrimSpace(qemuErr.String())
		qemuErrMu.Unlock()
		return nil, fmt.Errorf("qemu failed to start (%v): %s", err, firstLine(msg))
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()

	// One reader demultiplexes the channel: output goes straight to the
	// writers, control messages to the loop below.
	ctl := control.NewConn(conns["ctl"])
	msgs := make(chan control.Msg, 64)
	go func() {
		defer close(msgs)
		for {
			f, err := ctl.Recv()
			if err != nil {
				return
			}
			switch f.Kind {
			case control.KindStdout:
				r.o.Stdout.Write(f.Data)
			case control.KindStderr:
				r.o.Stderr.Write(f.Data)
			case control.KindControl:
				msgs <- f.Msg
			}
		}
	}()

	var graceTimer <-chan time.Time
	stopping := false
	done := ctx.Done()
	var qemuExit error
	// A kernel that hangs before the init says hello (a bad command
	// line, too little memory for it) would otherwise leave hull waiting
	// in silence.
	bootTimeout := r.o.BootTimeout
	if bootTimeout == 0 {
		bootTimeout = DefaultBootTimeout
	}
	bootTimer := time.NewTimer(bootTimeout)
	defer bootTimer.Stop()
loop:
	for {
		select {
		case m, ok := <-msgs:
			if !ok {
				msgs = nil
				continue
			}
			if m.Type == control.TypeHello {
				bootTimer.Stop()
			}
			r.handle(ctl, m)
		case <-bootTimer.C:
			fmt.Fprintf(r.o.Log, "hull: no word from the guest's init %v after launch: the kernel hung or could not start it (--verbose shows its console); killing the VM\n", bootTimeout)
			r.bootTimedOut = true
			cmd.Process.Kill()
		case <-done:
			done = nil
			stopping = true
			fmt.Fprintf(r.o.Log, "hull: stopping %s (SIGTERM to the app, %v grace; Ctrl-C again to kill)\n", r.o.Name, r.o.StopTimeout)
			ctl.Send(control.Msg{Type: control.TypeStop, Signal: int(syscall.SIGTERM)})
			graceTimer = time.After(r.o.StopTimeout)
		case <-graceTimer:
			fmt.Fprintf(r.o.Log, "hull: the app did not exit within %v; killing the VM\n", r.o.StopTimeout)
			r.result.Killed = true
			cmd.Process.Kill()
			graceTimer = nil
		case <-r.o.Kill:
			r.o.Kill = nil
			fmt.Fprintf(r.o.Log, "hull: killing the VM\n")
			r.result.Killed = true
			cmd.Process.Kill()
		case qemuExit = <-exited:
			break loop
		}
	}
	// Drain what the guest said before it powered off.
	if msgs != nil {
		drain := time.After(2 * time.Second)
	drainLoop:
		for {
			select {
			case m, ok := <-msgs:
				if !ok {
					break drainLoop
				}
				r.handle(ctl, m)
			case <-drain:
				break drainLoop
			}
		}
	}
	if logFile != nil {
		logFile.Close()
	}
	switch {
	case r.gotExit:
		r.event("exit", 0, fmt.Sprint(r.result.ExitCode))
		return &r.result, nil
	case r.startErr != nil:
		return nil, r.startErr
	case r.result.Killed:
		r.result.ExitCode = 137
		return &r.result, nil
	}
	_ = stopping
	qemuErrMu.Lock()
	msg := strings.TrimSpace(qemuErr.String())
	qemuErrMu.Unlock()
	reason := "the VM stopped before the app reported an exit status"
	if r.bootTimedOut {
		reason = fmt.Sprintf("the guest did not boot within %v", bootTimeout)
	} else if !r.helloSeen && r.o.MemoryMiB < smallGuestMiB {
		// A kernel given too little memory dies before its console is up.
		reason += fmt.Sprintf(" (the guest never reached its init: --memory %dM may be too small for kernel %s)", r.o.MemoryMiB, r.o.Kernel.Name)
	}
	if msg != "" {
		reason += ": qemu: " + firstLine(msg)
	} else if qemuExit != nil {
		reason += fmt.Sprintf(" (qemu: %v)", qemuExit)
	}
	return nil, &ExitError{Reason: reason, Console: r.console.String()}
}

func (r *run) handle(ctl *control.Conn, m control.Msg) {
	switch m.Type {
	case control.TypeHello:
		r.helloSeen = true
		r.event("init", m.Uptime, "")
		ports := make([]int, 0, len(r.o.Ports))
		for _, p := range r.o.Ports {
			ports = append(ports, p.GuestPort)
		}
		ctl.Send(control.Msg{Type: control.TypeConfig, Env: r.o.Env, Args: r.o.Args, ArgsSet: r.o.ArgsSet, Ports: ports})
	case control.TypeStage:
		r.event(m.Stage, m.Uptime, "")
	case control.TypeStarted:
		r.event("started", m.Uptime, fmt.Sprint(m.PID))
	case control.TypeListen:
		r.onListen(m)
	case control.TypeDenied:
		r.result.Denied = append(r.result.Denied, m.Text)
		fmt.Fprintf(r.o.Log, "hull: blocked: %s\n", m.Text)
	case control.TypeWarn:
		fmt.Fprintf(r.o.Log, "hull: warning: %s\n", m.Text)
	case control.TypeLog:
		if r.o.Verbose {
			fmt.Fprintf(r.o.Log, "hull-init: %s\n", m.Text)
		}
	case control.TypeError:
		r.startErr = &StartError{Code: m.Code, Msg: m.Text}
	case control.TypeExit:
		r.gotExit = true
		r.result.ExitCode, r.result.Signal = m.Code, m.Signal
	}
}

// onListen turns the guest's listening sockets into a ready event, and
// explains the classic trap: a server bound to the guest's loopback
// cannot be reached through a forward, which arrives on the guest's
// network address.
func (r *run) onListen(m control.Msg) {
	for _, p := range r.o.Ports {
		if p.GuestPort != m.Port || p.Proto != m.Proto {
			continue
		}
		ip := net.ParseIP(m.Addr)
		if ip != nil && ip.IsLoopback() {
			key := fmt.Sprintf("%s/%d", m.Proto, m.Port)
			if r.warned == nil {
				r.warned = map[string]bool{}
			}
			if !r.warned[key] {
				r.warned[key] = true
				fmt.Fprintf(r.o.Log, "hull: warning: the app listens on %s:%d/%s inside the VM, which only the VM itself can reach; "+
					"-p %s forwards to %s:%d, so make the app listen on 0.0.0.0:%d\n",
					m.Addr, m.Port, m.Proto, p, manifest.GuestIP, m.Port, m.Port)
			}
			continue
		}
		r.event("listening", 0, fmt.Sprintf("%s %s:%d", m.Proto, m.Addr, m.Port))
	}
}

func waitTimeout(wg *sync.WaitGroup, d time.Duration) {
	c := make(chan struct{})
	go func() { wg.Wait(); close(c) }()
	select {
	case <-c:
	case <-time.After(d):
	}
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// tail keeps the last n bytes written to it.
type tail struct {
	mu  sync.Mutex
	n   int
	buf []byte
}

func newTail(n int) *tail { return &tail{n: n} }

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > t.n {
		t.buf = append([]byte(nil), t.buf[len(t.buf)-t.n:]...)
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}
