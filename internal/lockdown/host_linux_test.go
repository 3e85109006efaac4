package lockdown_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/hullvm/hull/internal/lockdown"
)

// The host test installs the real filter in a child copy of this test
// binary, in EPERM mode (no listener), and reports what the kernel did.
// It sticks to the harmless subset: fork, exec, threads and a file read.
// It never tries module loading, mounts or signals to PID 1.
//
// The child runs in two stages, as the guest init and the app do:
//
//	stage 1: lock the OS thread, set no_new_privs, install the filter on
//	         that thread, probe, then execveat the exec descriptor — the
//	         one exec form the filter allows;
//	stage 2: the same binary, now filtered on every thread from its
//	         first instruction, as an app is; it probes again, including
//	         that the Go runtime could start threads.
const (
	childEnv = "LOCKDOWN_CHILD"
	// hostExecFD stands in for manifest.DefaultNoFile: any descriptor
	// number works, and this one is below common RLIMIT_NOFILE limits.
	hostExecFD = 1000
	// lockedThreads is how many goroutines stage 2 pins to OS threads at
	// once; each needs its own thread, so the runtime must clone them.
	lockedThreads = 8
)

// report prints one observation for the parent.
func report(key string, v any) { fmt.Printf("lockdown: %s=%v\n", key, v) }

func errName(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return unix.ErrnoName(errno)
	}
	if err == nil {
		return "ok"
	}
	return err.Error()
}

func TestFilterOnHost(t *testing.T) {
	switch os.Getenv(childEnv) {
	case "1":
		childStage1()
		os.Exit(3) // stage 1 ends in exec or exits itself
	case "2":
		childStage2()
		os.Exit(0)
	}

	cmd := exec.Command(os.Args[0], "-test.run=^TestFilterOnHost$", "-test.count=1")
	cmd.Env = append(os.Environ(), childEnv+"=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	got := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if k, v, ok := strings.Cut(strings.TrimPrefix(sc.Text(), "lockdown: "), "="); ok && strings.HasPrefix(sc.Text(), "lockdown: ") {
			got[k] = v
		}
	}
	if reason, ok := got["skip"]; ok {
		if os.Getenv("CI") == "true" {
			t.Fatalf("seccomp unavailable on this host (CI=true, so this is a failure): %s", reason)
		}
		t.Skipf("seccomp unavailable on this host: %s", reason)
	}
	if err != nil {
		t.Fatalf("child: %v (want exit 0)\nstdout:\n%s\nstderr:\n%s", err, out, stderr.Bytes())
	}
	want := map[string]string{
		"stage1.fork":           "EPERM",
		"stage1.execve":         "EPERM",
		"stage1.execveat_other": "EPERM",
		"stage1.read":           "ok",
		"stage2.seccomp_mode":   "2",
		"stage2.fork":           "EPERM",
		"stage2.vfork":          "EPERM",
		"stage2.execve":         "EPERM",
		"stage2.os_exec":        "EPERM",
		"stage2.clone3":         "ENOSYS",
		"stage2.threads":        fmt.Sprint(lockedThreads),
		"stage2.read":           "ok",
	}
	for k, w := range want {
		if g, ok := got[k]; !ok || g != w {
			t.Errorf("%s = %q (reported %v), want %q", k, g, ok, w)
		}
	}
	if t.Failed() {
		t.Logf("child stdout:\n%s\nstderr:\n%s", out, stderr.Bytes())
	}
}

// childStage1 installs the filter on a locked thread and execs stage 2.
func childStage1() {
	runtime.LockOSThread()
	exe, err := os.Executable()
	if err != nil {
		report("setup", err)
		os.Exit(2)
	}
	fd, err := unix.Open(exe, unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		report("setup", err)
		os.Exit(2)
	}
	if err := unix.Dup3(fd, hostExecFD, unix.O_CLOEXEC); err != nil {
		report("setup", err)
		os.Exit(2)
	}
	unix.Close(fd)
	other, err := unix.Open("/bin/true", unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		report("setup", err)
		os.Exit(2)
	}

	if err := lockdown.NoNewPrivs(); err != nil {
		report("skip", err)
		os.Exit(0)
	}
	prog, err := lockdown.Compile(lockdown.Policy(lockdown.Options{ExecFD: hostExecFD}), false)
	if err != nil {
		report("setup", err)
		os.Exit(2)
	}
	if _, err := lockdown.InstallFilter(prog, false); err != nil {
		report("skip", err)
		os.Exit(0)
	}

	_, _, errno := unix.RawSyscall(unix.SYS_FORK, 0, 0, 0)
	report("stage1.fork", errName(errno))
	report("stage1.execve", errName(syscall.Exec("/bin/true", []string{"true"}, os.Environ())))
	report("stage1.execveat_other", errName(execveat(other, []string{"true"}, os.Environ())))
	_, err = os.ReadFile("/proc/self/status")
	report("stage1.read", errName(err))

	env := []string{childEnv + "=2"}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, childEnv+"=") {
			env = append(env, kv)
		}
	}
	err = execveat(hostExecFD, []string{exe, "-test.run=^TestFilterOnHost$", "-test.count=1"}, env)
	report("stage1.execveat_self", errName(err))
	os.Exit(2)
}

// execveat runs the program open on fd, as the guest init does.
func execveat(fd int, argv, env []string) error {
	argvp, err := syscall.SlicePtrFromStrings(argv)
	if err != nil {
		return err
	}
	envp, err := syscall.SlicePtrFromStrings(env)
	if err != nil {
		return err
	}
	empty, _ := unix.BytePtrFromString("")
	_, _, errno := unix.RawSyscall6(unix.SYS_EXECVEAT, uintptr(fd), uintptr(unsafe.Pointer(empty)),
		uintptr(unsafe.Pointer(&argvp[0])), uintptr(unsafe.Pointer(&envp[0])), unix.AT_EMPTY_PATH, 0)
	return errno
}

// childStage2 runs with the filter on every thread.
func childStage2() {
	status, err := os.ReadFile("/proc/self/status")
	report("stage2.read", errName(err))
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "Seccomp:"); ok {
			report("stage2.seccomp_mode", strings.TrimSpace(v))
		}
	}

	_, _, errno := unix.RawSyscall(unix.SYS_FORK, 0, 0, 0)
	report("stage2.fork", errName(errno))
	_, _, errno = unix.RawSyscall(unix.SYS_VFORK, 0, 0, 0)
	report("stage2.vfork", errName(errno))
	_, _, errno = unix.RawSyscall(unix.SYS_CLONE3, 0, 0, 0)
	report("stage2.clone3", errName(errno))
	report("stage2.execve", errName(syscall.Exec("/bin/true", []string{"true"}, nil)))
	report("stage2.os_exec", errName(exec.Command("/bin/true").Run()))

	// Pin goroutines to OS threads all at once: the runtime has to clone
	// a new thread for each, which the filter must let through.
	var wg sync.WaitGroup
	release := make(chan struct{})
	tids := make(chan int, lockedThreads)
	for i := 0; i < lockedThreads; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			tids <- unix.Gettid()
			<-release
		}()
	}
	distinct := map[int]bool{}
	for i := 0; i < lockedThreads; i++ {
		distinct[<-tids] = true
	}
	close(release)
	wg.Wait()
	report("stage2.threads", len(distinct))
}
