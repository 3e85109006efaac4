// Package guestinit is hull-init, PID 1 of every hull guest.
//
// It mounts what it needs, loads the kernel modules named in the image
// manifest, opens the control port to the host, brings up the network
// with the manifest's static address, prepares the app's root (the app
// tree bind-mounted read-only, with a pid-hiding /proc, a minimal /dev and
// a size-capped noexec /tmp) and starts the app as its child. It then
// forwards stop requests, reaps, reports seccomp refusals and listening
// sockets, reports the app's exit status and powers the VM off.
//
// The lockdown it guarantees, applied in the child before the app's exec
// (see stage2): the app runs chrooted in its tree as the unprivileged app
// user, with every capability not declared dropped from all sets including
// the bounding set, no_new_privs, a landlock ruleset (read-only tree,
// writable /tmp without execute, only the program and its loader
// executable), RLIMIT_NOFILE below the descriptor its exec used, and the
// seccomp filter of package lockdown. The init and the manifest live
// outside the app's root and are never visible to it.
package guestinit

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hullvm/hull/internal/control"
	"github.com/hullvm/hull/internal/manifest"
)

// stage2Arg marks the re-exec of /init that becomes the app.
const stage2Arg = "__hull_stage2"

// Main is the entry point of hull-init.
func Main() {
	if len(os.Args) > 1 && os.Args[1] == stage2Arg {
		stage2()
		return
	}
	if os.Getpid() != 1 {
		fmt.Fprintln(os.Stderr, "hull-init runs as PID 1 inside a hull VM; it is not a command")
		os.Exit(2)
	}
	in := &initState{console: os.Stdout}
	err := in.run()
	if err != nil {
		in.fatal(err)
	}
	in.powerOff()
}

type initState struct {
	console io.Writer
	verbose bool
	ctl     *control.Conn
	ctlFile *os.File
	m       *manifest.Manifest
	cfg     control.Msg
}

func (in *initState) logf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if in.verbose {
		fmt.Fprintln(in.console, "hull-init: "+msg)
	}
}

// fatal reports an error that prevents the app from running. The host
// gets it on the control port when that is open, else on the console.
func (in *initState) fatal(err error) {
	fmt.Fprintln(in.console, "hull-init: error: "+err.Error())
	if in.ctl != nil {
		code := 127
		var se *startError
		if errors.As(err, &se) {
			code = se.code
		}
		in.ctl.Send(control.Msg{Type: control.TypeError, Text: err.Error(), Code: code})
	}
	in.powerOff()
}

func (in *initState) powerOff() {
	if in.ctlFile != nil {
		in.ctlFile.Sync()
	}
	unix.Sync()
	// A kernel booted without ACPI (the tuned one) has no way to power
	// the machine off and would only halt it; a restart (reboot=t) ends
	// the VM just as well, since QEMU runs with -no-reboot.
	cmd := unix.LINUX_REBOOT_CMD_POWER_OFF
	if _, err := os.Stat("/sys/firmware/acpi"); err != nil {
		cmd = unix.LINUX_REBOOT_CMD_RESTART
	}
	unix.Reboot(cmd)
	// Reboot only returns on failure; PID 1 must not exit (that panics
	// the kernel), so wait for the end.
	select {}
}

func uptime() float64 {
	var ts unix.Timespec
	if unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts) != nil {
		return 0
	}
	return float64(ts.Sec) + float64(ts.Nsec)/1e9
}

func (in *initState) stage(name string) {
	if in.ctl != nil {
		in.ctl.Send(control.Msg{Type: control.TypeStage, Stage: name, Uptime: uptime()})
	}
}

func (in *initState) run() error {
	start := uptime()
	if err := mountEarly(); err != nil {
		return err
	}
	cmdline, _ := os.ReadFile("/proc/cmdline")
	in.verbose = bytes.Contains(cmdline, []byte("hull.verbose=1"))
	data, err := os.ReadFile(manifest.ManifestPath)
	if err != nil {
		return fmt.Errorf("reading manifest: %w", err)
	}
	m, err := manifest.Unmarshal(data)
	if err != nil {
		return err
	}
	in.m = m
	modStart := uptime()
	if err := loadModules(m.Modules, in.logf); err != nil {
		return err
	}
	modEnd := uptime()
	f, err := openConsole(manifest.ControlDevice, 10*time.Second)
	if err != nil {
		return err
	}
	in.ctlFile = f
	in.ctl = control.NewConn(f)
	in.ctl.Send(control.Msg{Type: control.TypeHello, Uptime: start})
	in.ctl.Send(control.Msg{Type: control.TypeStage, Stage: "modules-start", Uptime: modStart})
	in.ctl.Send(control.Msg{Type: control.TypeStage, Stage: "modules", Uptime: modEnd})
	msgs := make(chan control.Msg, 16)
	go func() {
		defer close(msgs)
		for {
			f, err := in.ctl.Recv()
			if err != nil {
				return
			}
			if f.Kind == control.KindControl {
				msgs <- f.Msg
			}
		}
	}()
	in.cfg, err = waitConfig(msgs, 60*time.Second)
	if err != nil {
		return err
	}
	if err := networkUp(m.Network); err != nil {
		return err
	}
	if err := unix.Sethostname([]byte(m.Hostname)); err != nil {
		return fmt.Errorf("setting hostname: %w", err)
	}
	in.stage("network")
	if err := prepareRoot(m); err != nil {
		return err
	}
	in.stage("root")
	return in.superviseApp(msgs)
}

func waitConfig(msgs <-chan control.Msg, timeout time.Duration) (control.Msg, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		select {
		case msg, ok := <-msgs:
			if !ok {
				return control.Msg{}, errors.New("control port closed before the host sent the run configuration")
			}
			if msg.Type == control.TypeConfig {
				return msg, nil
			}
		case <-t.C:
			return control.Msg{}, errors.New("the host sent no run configuration")
		}
	}
}

// superviseApp starts the app, then waits for it while serving stop
// requests, and reports how it ended.
func (in *initState) superviseApp(msgs <-chan control.Msg) error {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, unix.SIGCHLD, unix.SIGTERM, unix.SIGINT, unix.SIGPWR)
	app, err := startApp(in.m, in.cfg.Env, in.cfg.Args, in.cfg.ArgsSet, in.ctl)
	if err != nil {
		return err
	}
	in.ctl.Send(control.Msg{Type: control.TypeStarted, PID: app.pid, Uptime: uptime()})
	if app.notifyFD >= 0 {
		go serveNotifications(app.notifyFD, app.rules, in.ctl)
	}
	go watchListeners(in.ctl)
	for {
		select {
		case msg, ok := <-msgs:
			if !ok {
				msgs = nil
				continue
			}
			if msg.Type == control.TypeStop {
				sig := unix.Signal(msg.Signal)
				if sig == 0 {
					sig = unix.SIGTERM
				}
				in.logf("delivering %v to the app", sig)
				unix.Kill(app.pid, sig)
			}
		case s := <-sigs:
			switch s {
			case unix.SIGTERM, unix.SIGINT, unix.SIGPWR:
				unix.Kill(app.pid, unix.SIGTERM)
				continue
			}
			done, code, sig := reap(app.pid)
			if done {
				// Everything the app wrote reaches the host before its exit
				// status: its pipes close when it exits.
				app.waitOutput(5 * time.Second)
				in.ctl.Send(control.Msg{Type: control.TypeExit, Code: code, Signal: sig, Uptime: uptime()})
				return nil
			}
		}
	}
}

// reap collects every exited child; it reports whether the app was one.
func reap(appPID int) (done bool, code, sig int) {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil || pid <= 0 {
			return done, code, sig
		}
		if pid != appPID {
			continue
		}
		done = true
		switch {
		case ws.Exited():
			code = ws.ExitStatus()
		case ws.Signaled():
			sig = int(ws.Signal())
			code = 128 + sig
		}
	}
}

func mountEarly() error {
	for _, m := range []struct {
		src, dst, fstype string
		flags            uintptr
	}{
		{"proc", "/proc", "proc", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC},
		{"sysfs", "/sys", "sysfs", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC},
		{"devtmpfs", "/dev", "devtmpfs", unix.MS_NOSUID | unix.MS_NOEXEC},
	} {
		if err := os.MkdirAll(m.dst, 0o755); err != nil {
			return fmt.Errorf("creating %s: %w", m.dst, err)
		}
		if err := unix.Mount(m.src, m.dst, m.fstype, m.flags, ""); err != nil && !errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("mounting %s: %w", m.dst, err)
		}
	}
	return nil
}

// openConsole waits for the control console and opens it raw: no echo,
// no line editing, no newline translation, so frames pass unchanged.
func openConsole(dev string, timeout time.Duration) (*os.File, error) {
	deadline := time.Now().Add(timeout)
	for {
		f, err := os.OpenFile(dev, os.O_RDWR|unix.O_NOCTTY, 0)
		if err == nil {
			if err := makeRaw(int(f.Fd())); err != nil {
				f.Close()
				return nil, fmt.Errorf("control console %s: %w", dev, err)
			}
			return f, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("control console %s did not appear within %v: %w", dev, timeout, err)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func makeRaw(fd int) error {
	t, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return err
	}
	t.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON | unix.IXOFF
	t.Oflag &^= unix.OPOST
	t.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	t.Cflag &^= unix.CSIZE | unix.PARENB
	t.Cflag |= unix.CS8
	t.Cc[unix.VMIN] = 1
	t.Cc[unix.VTIME] = 0
	return unix.IoctlSetTermios(fd, unix.TCSETS, t)
}
