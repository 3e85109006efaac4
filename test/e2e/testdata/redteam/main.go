// Command redteam tries, from inside a hull guest, what an attacker who
// got code execution in the app would try next. It prints one JSON line
// per attempt: {"attempt": name, "ok": whether the attack succeeded,
// "errno": the error it got}. With -harmless it runs only the attempts
// that are safe on a normal host (exec, fork), so a test can prove the
// probe detects success where nothing stops it.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"
	"unsafe"
)

type result struct {
	Attempt string `json:"attempt"`
	OK      bool   `json:"ok"`
	Errno   string `json:"errno,omitempty"`
	Detail  string `json:"detail,omitempty"`
}

func report(name string, err error, detail string) {
	r := result{Attempt: name, OK: err == nil, Detail: detail}
	if err != nil {
		r.Errno = errnoName(err)
		if r.Detail == "" {
			r.Detail = err.Error()
		}
	}
	b, _ := json.Marshal(r)
	fmt.Println(string(b))
}

func errnoName(err error) string {
	var en syscall.Errno
	if errors.As(err, &en) {
		if n := names[en]; n != "" {
			return n
		}
		return fmt.Sprintf("errno %d", int(en))
	}
	return "error"
}

var names = map[syscall.Errno]string{
	syscall.EPERM: "EPERM", syscall.EACCES: "EACCES", syscall.ENOENT: "ENOENT", syscall.EROFS: "EROFS",
	syscall.ESRCH: "ESRCH", syscall.ENOSYS: "ENOSYS", syscall.EBADF: "EBADF", syscall.ECONNREFUSED: "ECONNREFUSED",
	syscall.ETIMEDOUT: "ETIMEDOUT", syscall.ENETUNREACH: "ENETUNREACH", syscall.EHOSTUNREACH: "EHOSTUNREACH",
	syscall.ETXTBSY: "ETXTBSY", syscall.EINVAL: "EINVAL", syscall.ENOSPC: "ENOSPC", syscall.ECONNRESET: "ECONNRESET",
}

func errno(e syscall.Errno) error {
	if e == 0 {
		return nil
	}
	return e
}

// dropBinary copies this program to dir as an executable file.
func dropBinary(dir string) (string, error) {
	self, err := os.ReadFile("/proc/self/exe")
	if err != nil {
		return "", err
	}
	p := filepath.Join(dir, "dropped")
	if err := os.WriteFile(p, self, 0o755); err != nil {
		return "", err
	}
	return p, nil
}

// rawFork forks without the Go runtime's help; the child exits at once.
func rawFork() error {
	pid, _, e := syscall.RawSyscall(syscall.SYS_FORK, 0, 0, 0)
	if e != 0 {
		return e
	}
	if pid == 0 {
		syscall.RawSyscall(syscall.SYS_EXIT_GROUP, 0, 0, 0)
	}
	var ws syscall.WaitStatus
	syscall.Wait4(int(pid), &ws, 0, nil)
	return nil
}

// inChild makes one system call in a raw-forked child and returns the
// errno the child exits with (nil for 0). It is for attempts that would
// end or freeze the probe when they succeed, so the probe goes on to
// report the rest; callers use it only where fork works, which it never
// does in a hull guest. The child is a copy of one thread of a Go
// program, so it makes raw system calls only: dup2 of stdout to
// stdoutTo (unless -1), the call, exit_group.
func inChild(stdoutTo int, trap uintptr, args [6]uintptr) error {
	pid, _, e := syscall.RawSyscall(syscall.SYS_FORK, 0, 0, 0)
	if e != 0 {
		return fmt.Errorf("fork for the attempt: %w", e)
	}
	if pid == 0 {
		if stdoutTo != -1 {
			syscall.RawSyscall(syscall.SYS_DUP2, uintptr(stdoutTo), 1, 0)
		}
		_, _, e := syscall.RawSyscall6(trap, args[0], args[1], args[2], args[3], args[4], args[5])
		syscall.RawSyscall(syscall.SYS_EXIT_GROUP, uintptr(e), 0, 0)
	}
	var ws syscall.WaitStatus
	if _, err := syscall.Wait4(int(pid), &ws, 0, nil); err != nil {
		return err
	}
	switch {
	case ws.Exited() && ws.ExitStatus() == 0:
		return nil
	case ws.Exited():
		return syscall.Errno(ws.ExitStatus())
	}
	return fmt.Errorf("the child making the attempt: %v", ws)
}

// reap waits for a child the probe made, so it leaves no zombie.
func reap(pid int) {
	var ws syscall.WaitStatus
	syscall.Wait4(pid, &ws, 0, nil)
}

func harmless(tmp string) {
	report("exec_bin_true", exec.Command("/bin/true").Run(), "")
	p, err := dropBinary(tmp)
	if err == nil {
		err = exec.Command(p, "-child").Run()
	}
	report("exec_dropped_binary", err, "")
	report("fork", rawFork(), "")
}

func main() {
	harmlessOnly := flag.Bool("harmless", false, "only exec and fork attempts (safe on a host)")
	child := flag.Bool("child", false, "exit at once (the program run by exec attempts)")
	tmp := flag.String("tmp", "/tmp", "writable directory for dropped files")
	flag.Parse()
	if *child {
		fmt.Println(`{"attempt":"exec_direct","ok":true,"detail":"a dropped binary ran"}`)
		return
	}
	if *harmlessOnly {
		harmless(*tmp)
		fmt.Println(`{"attempt":"done","ok":false}`)
		return
	}
	runtime.LockOSThread()

	report("exec_bin_sh", exec.Command("/bin/sh", "-c", "true").Run(), "")
	dropped, derr := dropBinary(*tmp)
	if derr == nil {
		derr = exec.Command(dropped, "-child").Run()
	}
	report("exec_dropped_binary", derr, "")
	forkErr := rawFork()
	report("fork", forkErr, "")
	{
		pid, _, e := syscall.RawSyscall(syscall.SYS_CLONE, uintptr(syscall.SIGCHLD), 0, 0)
		if e == 0 && pid == 0 {
			// The child must not run on.
			syscall.RawSyscall(syscall.SYS_EXIT_GROUP, 0, 0, 0)
		}
		if e == 0 {
			reap(int(pid))
		}
		report("clone_process", errno(e), "")
	}
	{
		pid, _, e := syscall.RawSyscall(syscall.SYS_VFORK, 0, 0, 0)
		if e == 0 && pid == 0 {
			syscall.RawSyscall(syscall.SYS_EXIT_GROUP, 0, 0, 0)
		}
		if e == 0 {
			reap(int(pid))
		}
		report("vfork", errno(e), "")
	}
	{
		// Reach for the descriptor number the init's own exec used.
		f, err := os.Open("/proc/self/exe")
		if err == nil {
			err = syscall.Dup3(int(f.Fd()), 65536, 0)
			f.Close()
		}
		report("dup_to_exec_fd", err, "")
		var lim syscall.Rlimit
		syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)
		lim.Max, lim.Cur = 1<<20, 1<<20
		report("raise_nofile_limit", syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim), "")
	}
	{
		f, err := os.Open("/proc/self/exe")
		if err == nil && forkErr != nil {
			empty := []byte{0}
			argv := []*byte{nil}
			_, _, e := syscall.Syscall6(322 /* execveat */, f.Fd(), uintptr(unsafe.Pointer(&empty[0])),
				uintptr(unsafe.Pointer(&argv[0])), uintptr(unsafe.Pointer(&argv[0])), 0x1000, 0)
			err = errno(e)
		} else if err == nil {
			// Success replaces the process: a child attempts it, and its
			// new image (this program, -child) exits at once, silenced.
			var null *os.File
			if null, err = os.OpenFile("/dev/null", os.O_WRONLY, 0); err == nil {
				empty, arg0, arg1 := []byte{0}, []byte("redteam\x00"), []byte("-child\x00")
				argv := []*byte{&arg0[0], &arg1[0], nil}
				err = inChild(int(null.Fd()), 322 /* execveat */, [6]uintptr{f.Fd(), uintptr(unsafe.Pointer(&empty[0])),
					uintptr(unsafe.Pointer(&argv[0])), uintptr(unsafe.Pointer(&argv[2])), 0x1000, 0})
				null.Close()
			}
		}
		if f != nil {
			f.Close()
		}
		report("execveat_own_binary", err, "")
	}
	{
		_, _, e := syscall.RawSyscall6(syscall.SYS_PTRACE, syscall.PTRACE_ATTACH, 1, 0, 0, 0, 0)
		report("ptrace_pid1", errno(e), "")
		if forkErr != nil {
			_, _, e = syscall.RawSyscall6(syscall.SYS_PTRACE, syscall.PTRACE_TRACEME, 0, 0, 0, 0, 0)
			report("ptrace_traceme", errno(e), "")
		} else {
			// Success would stop the probe at its next signal until the
			// parent, which is not watching, lets it go: a child asks.
			report("ptrace_traceme", inChild(-1, syscall.SYS_PTRACE, [6]uintptr{syscall.PTRACE_TRACEME}), "")
		}
	}
	{
		f, err := os.Open("/proc/self/exe")
		if err == nil {
			_, _, e := syscall.RawSyscall(313 /* finit_module */, f.Fd(), uintptr(unsafe.Pointer(&[]byte{0}[0])), 0)
			err = errno(e)
			f.Close()
		}
		report("finit_module", err, "")
	}
	os.Mkdir(*tmp+"/m", 0o755)
	report("mount_tmpfs", syscall.Mount("tmpfs", *tmp+"/m", "tmpfs", 0, ""), "")
	report("remount_root_rw", syscall.Mount("", "/", "", syscall.MS_REMOUNT, ""), "")
	report("chroot", syscall.Chroot(*tmp), "")
	report("unshare_userns", syscall.Unshare(syscall.CLONE_NEWUSER|syscall.CLONE_NEWNS), "")
	report("setuid_root", syscall.Setuid(0), "")
	{
		err := os.WriteFile("/pwned", []byte("x"), 0o644)
		report("write_root", err, "")
		f, err := os.OpenFile("/proc/self/exe", os.O_WRONLY, 0)
		if err == nil {
			f.Close()
		}
		report("write_own_binary", err, "")
		err = os.WriteFile("/etc/passwd", []byte("root::0:0::/:/bin/sh\n"), 0o644)
		report("write_etc_passwd", err, "")
	}
	{
		_, err := os.ReadFile("/proc/1/environ")
		report("read_pid1_environ", err, "")
		_, err = os.ReadFile("/hull/manifest.json")
		report("read_hull_manifest", err, "")
		_, err = os.Open("/dev/mem")
		report("open_dev_mem", err, "")
		_, err = os.Open("/dev/kmsg")
		report("open_dev_kmsg", err, "")
	}
	report("kill_pid1", syscall.Kill(1, syscall.SIGKILL), "")
	{
		fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_RAW, syscall.IPPROTO_ICMP)
		if err == nil {
			syscall.Close(fd)
		}
		report("raw_socket", err, "")
		fd, err = syscall.Socket(syscall.AF_PACKET, syscall.SOCK_RAW, 0)
		if err == nil {
			syscall.Close(fd)
		}
		report("packet_socket", err, "")
	}
	report("mknod_device", syscall.Mknod(*tmp+"/mem", syscall.S_IFCHR|0o666, 1<<8|1), "")
	{
		_, _, e := syscall.RawSyscall(319 /* memfd_create */, uintptr(unsafe.Pointer(&[]byte("x\x00")[0])), 0, 0)
		report("memfd_create", errno(e), "")
		var params [120]byte
		_, _, e = syscall.RawSyscall(425 /* io_uring_setup */, 4, uintptr(unsafe.Pointer(&params[0])), 0)
		report("io_uring_setup", errno(e), "")
		_, _, e = syscall.RawSyscall(321 /* bpf */, 0, 0, 0)
		report("bpf", errno(e), "")
		_, _, e = syscall.RawSyscall(323 /* userfaultfd */, 0, 0, 0)
		report("userfaultfd", errno(e), "")
		_, _, e = syscall.RawSyscall(250 /* keyctl */, 0, 0, 0)
		report("keyctl", errno(e), "")
		_, _, e = syscall.RawSyscall6(298 /* perf_event_open */, 0, 0, ^uintptr(0), ^uintptr(0), 0, 0)
		report("perf_event_open", errno(e), "")
		_, _, e = syscall.RawSyscall6(syscall.SYS_REBOOT, 0xfee1dead, 672274793, 0x4321fedc, 0, 0, 0)
		report("reboot", errno(e), "")
		report("sethostname", syscall.Sethostname([]byte("pwned")), "")
	}
	{
		err := os.WriteFile("/proc/sysrq-trigger", []byte("b"), 0)
		report("sysrq_trigger", err, "")
	}
	{
		// A shared object dropped in /tmp cannot be mapped executable.
		f, err := os.Open(dropped)
		if err == nil {
			_, err = syscall.Mmap(int(f.Fd()), 0, 4096, syscall.PROT_READ|syscall.PROT_EXEC, syscall.MAP_PRIVATE)
			f.Close()
		} else {
			err = fmt.Errorf("no dropped file: %w", err)
			err = errors.Join(err, syscall.EACCES)
		}
		report("mmap_exec_from_tmp", err, "")
	}
	{
		status, _ := os.ReadFile("/proc/self/status")
		var err error = syscall.EPERM
		detail := ""
		for _, line := range strings.Split(string(status), "\n") {
			if strings.HasPrefix(line, "CapEff:") || strings.HasPrefix(line, "CapPrm:") || strings.HasPrefix(line, "CapBnd:") || strings.HasPrefix(line, "CapAmb:") {
				detail += line + " "
				if !strings.HasSuffix(strings.TrimSpace(line), "0000000000000000") {
					err = nil
				}
			}
		}
		report("hold_capabilities", err, strings.TrimSpace(detail))
	}
	egress := func(name, network, addr string) {
		c, err := net.DialTimeout(network, addr, 3*time.Second)
		if err == nil && network == "udp" {
			c.SetDeadline(time.Now().Add(2 * time.Second))
			c.Write([]byte("hello"))
			_, err = c.Read(make([]byte, 16))
		}
		if c != nil {
			c.Close()
		}
		if err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
			err = errors.Join(err, syscall.ETIMEDOUT)
		}
		report(name, err, addr)
	}
	// Unroutable documentation address (RFC 5737), the cloud metadata
	// address, and the host's loopback through the gateway alias.
	egress("egress_tcp_testnet", "tcp", "192.0.2.1:80")
	egress("egress_udp_dns_testnet", "udp", "192.0.2.1:53")
	egress("egress_metadata", "tcp", "169.254.169.254:80")
	egress("egress_host_loopback_ssh", "tcp", "10.0.2.2:22")
	{
		_, err := net.LookupHost("example.com")
		report("dns_lookup_undeclared", err, "example.com")
	}
	// Last: replace this process with the dropped binary. Success prints
	// its own "ok" line; failure returns here.
	if dropped != "" {
		err := syscall.Exec(dropped, []string{dropped, "-child"}, nil)
		report("exec_direct", err, "")
	}
	fmt.Println(`{"attempt":"done","ok":false}`)
	io.WriteString(os.Stdout, "")
}
