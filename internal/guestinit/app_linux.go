package guestinit

import (
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"runtime"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/hullvm/hull/internal/control"
	"github.com/hullvm/hull/internal/lockdown"
	"github.com/hullvm/hull/internal/manifest"
)

// stage2Config is what the init hands the child that becomes the app.
type stage2Config struct {
	Root    string   `json:"root"`
	Program string   `json:"program"`
	Interp  string   `json:"interp"`
	Argv    []string `json:"argv"`
	Env     []string `json:"env"`
	Cwd     string   `json:"cwd"`
	UID     int      `json:"uid"`
	GID     int      `json:"gid"`
	Caps    []int    `json:"caps"`
	NoFile  int      `json:"nofile"`
}

// stage2Reply is what the child says back before its exec.
type stage2Reply struct {
	Error string `json:"error,omitempty"`
	Code  int    `json:"code,omitempty"`
	Warn  string `json:"warn,omitempty"`
}

// startError is an app that could not be started; code becomes the exit
// status the host reports (126: found but not runnable, 127: not found).
type startError struct {
	code int
	msg  string
}

func (e *startError) Error() string { return e.msg }

type appProc struct {
	pid      int
	notifyFD int
	rules    []lockdown.Rule
	relays   sync.WaitGroup // copying the app's stdout and stderr to the host
}

// waitOutput waits until the app's output has been relayed, or d.
func (a *appProc) waitOutput(d time.Duration) {
	done := make(chan struct{})
	go func() { a.relays.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
	}
}

// relay copies one of the app's output pipes to the host as output frames.
func relay(r *os.File, kind byte, ctl *control.Conn, wg *sync.WaitGroup) {
	defer wg.Done()
	defer r.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if ctl.SendOutput(kind, buf[:n]) != nil {
				// The host is gone; keep draining so the app never
				// blocks on a full pipe.
				io.Copy(io.Discard, r)
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// startApp forks /init as stage 2 with the app's stdio, hands it the
// configuration, receives the seccomp listener and waits for the exec.
func startApp(m *manifest.Manifest, runEnv []string, args []string, argsSet bool, ctl *control.Conn) (*appProc, error) {
	hostProg := path.Join(manifest.AppRoot, m.Program)
	if _, err := os.Stat(hostProg); err != nil {
		return nil, &startError{127, fmt.Sprintf("program %s is not in the image: %v", m.Program, err)}
	}
	interp, err := programInterp(hostProg)
	if err != nil {
		return nil, &startError{126, fmt.Sprintf("program %s: %v", m.Program, err)}
	}
	cfg := stage2Config{
		Root: manifest.AppRoot, Program: m.Program, Interp: interp,
		Argv: append([]string{m.Program}, m.Args...), Env: manifest.MergeEnv(m.Env, runEnv),
		Cwd: m.Cwd, UID: m.User.UID, GID: m.User.GID, NoFile: m.NoFile,
	}
	if argsSet {
		cfg.Argv = append([]string{m.Program}, args...)
	}
	for _, c := range m.Capabilities {
		if n, ok := manifest.Capabilities[c]; ok {
			cfg.Caps = append(cfg.Caps, n)
		}
	}
	app := &appProc{}
	outR, stdout, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("creating stdout pipe: %w", err)
	}
	defer stdout.Close()
	errR, stderr, err := os.Pipe()
	if err != nil {
		outR.Close()
		return nil, fmt.Errorf("creating stderr pipe: %w", err)
	}
	defer stderr.Close()
	// The app reopens its streams by name at times (/dev/stdout, which is
	// /proc/self/fd/1): the pipes must belong to it, not to root.
	for _, f := range []*os.File{stdout, stderr} {
		if err := unix.Fchown(int(f.Fd()), m.User.UID, m.User.GID); err != nil {
			outR.Close()
			errR.Close()
			return nil, fmt.Errorf("handing the output pipes to the app user: %w", err)
		}
	}
	app.relays.Add(2)
	go relay(outR, control.KindStdout, ctl, &app.relays)
	go relay(errR, control.KindStderr, ctl, &app.relays)
	null, err := os.Open("/dev/null")
	if err != nil {
		return nil, err
	}
	defer null.Close()
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socketpair: %w", err)
	}
	parent := os.NewFile(uintptr(pair[0]), "stage2-parent")
	child := os.NewFile(uintptr(pair[1]), "stage2-child")
	defer parent.Close()
	proc, err := os.StartProcess("/init", []string{"/init", stage2Arg}, &os.ProcAttr{
		Dir:   "/",
		Env:   []string{},
		Files: []*os.File{null, stdout, stderr, child},
		Sys:   &syscall.SysProcAttr{Setsid: true},
	})
	child.Close()
	if err != nil {
		return nil, fmt.Errorf("starting the app: %w", err)
	}
	// The app is reaped by the supervise loop through wait4; drop the
	// os.Process handle (Release also forgets the pid, so keep it).
	pid := proc.Pid
	proc.Release()
	if err := json.NewEncoder(parent).Encode(cfg); err != nil {
		return nil, fmt.Errorf("configuring the app: %w", err)
	}
	unix.Shutdown(pair[0], unix.SHUT_WR)

	notifyFD, reply, err := recvStage2(pair[0])
	if err != nil {
		return nil, err
	}
	if reply.Error != "" {
		code := reply.Code
		if code == 0 {
			code = 126
		}
		return nil, &startError{code, reply.Error}
	}
	app.pid, app.notifyFD, app.rules = pid, notifyFD, lockdown.Policy(policyOptions(cfg))
	return app, nil
}

func policyOptions(cfg stage2Config) lockdown.Options {
	return lockdown.Options{ExecFD: cfg.NoFile}
}

// recvStage2 reads the child's messages until its exec closes the socket:
// the seccomp listener (as SCM_RIGHTS) and possibly an error.
func recvStage2(fd int) (int, stage2Reply, error) {
	notifyFD := -1
	var data []byte
	buf := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(4))
	for {
		n, oobn, _, _, err := unix.Recvmsg(fd, buf, oob, unix.MSG_CMSG_CLOEXEC)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return -1, stage2Reply{}, fmt.Errorf("waiting for the app to start: %w", err)
		}
		if oobn > 0 {
			scms, err := unix.ParseSocketControlMessage(oob[:oobn])
			if err == nil {
				for _, s := range scms {
					if fds, err := unix.ParseUnixRights(&s); err == nil && len(fds) > 0 {
						notifyFD = fds[0]
					}
				}
			}
		}
		if n == 0 && oobn == 0 {
			break
		}
		data = append(data, buf[:n]...)
	}
	var reply stage2Reply
	if len(data) > 0 {
		// The child writes one JSON reply; after a successful exec the
		// socket closes with nothing but the listener sent.
		for _, line := range splitLines(data) {
			var r stage2Reply
			if json.Unmarshal(line, &r) == nil {
				if r.Error != "" {
					reply = r
				}
			}
		}
	}
	return notifyFD, reply, nil
}

func splitLines(b []byte) [][]byte {
	var out [][]byte
	for len(b) > 0 {
		i := 0
		for i < len(b) && b[i] != '\n' {
			i++
		}
		if i > 0 {
			out = append(out, b[:i])
		}
		if i == len(b) {
			break
		}
		b = b[i+1:]
	}
	return out
}

// programInterp returns the PT_INTERP of an ELF ("" when static).
func programInterp(p string) (string, error) {
	f, err := elf.Open(p)
	if err != nil {
		return "", fmt.Errorf("not a runnable ELF program: %w", err)
	}
	defer f.Close()
	for _, ph := range f.Progs {
		if ph.Type != elf.PT_INTERP {
			continue
		}
		b, err := io.ReadAll(ph.Open())
		if err != nil {
			return "", fmt.Errorf("reading PT_INTERP: %w", err)
		}
		for i, c := range b {
			if c == 0 {
				b = b[:i]
				break
			}
		}
		return string(b), nil
	}
	return "", nil
}

// stage2 runs in the child: lock down this thread, then exec the app
// from it. It never returns.
func stage2() {
	runtime.LockOSThread()
	// The socket came as an inherited descriptor without close-on-exec;
	// the app must never hold a channel to PID 1.
	unix.CloseOnExec(3)
	sock := os.NewFile(3, "stage2")
	var cfg stage2Config
	if err := json.NewDecoder(sock).Decode(&cfg); err != nil {
		stage2Fail(sock, 126, fmt.Errorf("reading configuration: %w", err))
	}
	code, err := lockAndExec(&cfg, 3)
	stage2Fail(sock, code, err)
}

func stage2Fail(sock *os.File, code int, err error) {
	b, _ := json.Marshal(stage2Reply{Error: err.Error(), Code: code})
	sock.Write(append(b, '\n'))
	os.Exit(code)
}

// lockAndExec applies the lockdown in a fixed order — each step needs the
// privilege the next one removes — and execs. It returns only on error.
func lockAndExec(cfg *stage2Config, sock int) (int, error) {
	if err := unix.Chroot(cfg.Root); err != nil {
		return 126, fmt.Errorf("entering the app root: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return 126, fmt.Errorf("entering the app root: %w", err)
	}
	// The program is opened before dropping privileges and handed to
	// execveat by descriptor, so exec needs no path lookup afterwards.
	progFD, err := unix.Open(cfg.Program, unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		return 127, fmt.Errorf("opening program %s: %w", cfg.Program, err)
	}
	lim := uint64(cfg.NoFile) + 1
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: lim, Max: lim}); err != nil {
		return 126, fmt.Errorf("raising the descriptor limit: %w", err)
	}
	if err := unix.Dup3(progFD, cfg.NoFile, unix.O_CLOEXEC); err != nil {
		return 126, fmt.Errorf("placing the program descriptor: %w", err)
	}
	unix.Close(progFD)
	// From here on the app can never hold descriptor NoFile again.
	soft := uint64(1024)
	if soft > uint64(cfg.NoFile) {
		soft = uint64(cfg.NoFile)
	}
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: soft, Max: uint64(cfg.NoFile)}); err != nil {
		return 126, fmt.Errorf("setting the descriptor limit: %w", err)
	}
	if err := unix.Chdir(cfg.Cwd); err != nil {
		return 126, fmt.Errorf("changing to the working directory %s: %w", cfg.Cwd, err)
	}
	if err := lockdown.DropBoundingSet(cfg.Caps); err != nil {
		return 126, err
	}
	if len(cfg.Caps) > 0 {
		if err := unix.Prctl(unix.PR_SET_KEEPCAPS, 1, 0, 0, 0); err != nil {
			return 126, fmt.Errorf("keeping declared capabilities: %w", err)
		}
	}
	if _, _, errno := unix.RawSyscall(unix.SYS_SETGROUPS, 0, 0, 0); errno != 0 {
		return 126, fmt.Errorf("clearing supplementary groups: %w", errno)
	}
	if _, _, errno := unix.RawSyscall(unix.SYS_SETRESGID, uintptr(cfg.GID), uintptr(cfg.GID), uintptr(cfg.GID)); errno != 0 {
		return 126, fmt.Errorf("switching to gid %d: %w", cfg.GID, errno)
	}
	if _, _, errno := unix.RawSyscall(unix.SYS_SETRESUID, uintptr(cfg.UID), uintptr(cfg.UID), uintptr(cfg.UID)); errno != 0 {
		return 126, fmt.Errorf("switching to uid %d: %w", cfg.UID, errno)
	}
	if err := lockdown.SetCaps(cfg.Caps); err != nil {
		return 126, err
	}
	if err := lockdown.NoNewPrivs(); err != nil {
		return 126, err
	}
	if _, err := lockdown.Landlock(landlockRules(cfg)); err != nil && !errors.Is(err, lockdown.ErrLandlockUnavailable) {
		return 126, err
	}
	rules := lockdown.Policy(policyOptions(*cfg))
	prog, err := lockdown.Compile(rules, true)
	if err != nil {
		return 126, err
	}
	argv, err := syscall.SlicePtrFromStrings(cfg.Argv)
	if err != nil {
		return 126, err
	}
	envv, err := syscall.SlicePtrFromStrings(cfg.Env)
	if err != nil {
		return 126, err
	}
	empty, _ := unix.BytePtrFromString("")
	listener, err := lockdown.InstallFilter(prog, true)
	if err != nil {
		// Kernels without user notification still get the filter,
		// answering EPERM on their own.
		prog, cerr := lockdown.Compile(rules, false)
		if cerr != nil {
			return 126, cerr
		}
		if _, err := lockdown.InstallFilter(prog, false); err != nil {
			return 126, err
		}
	} else {
		if err := unix.Sendmsg(sock, []byte("F\n"), unix.UnixRights(listener), nil, 0); err != nil {
			return 126, fmt.Errorf("handing over the seccomp listener: %w", err)
		}
		unix.Close(listener)
	}
	_, _, errno := unix.RawSyscall6(unix.SYS_EXECVEAT, uintptr(cfg.NoFile), uintptr(unsafe.Pointer(empty)),
		uintptr(unsafe.Pointer(&argv[0])), uintptr(unsafe.Pointer(&envv[0])), unix.AT_EMPTY_PATH, 0)
	code := 126
	if errno == unix.ENOENT {
		code = 127
	}
	return code, fmt.Errorf("exec %s: %w", cfg.Program, errno)
}

func landlockRules(cfg *stage2Config) []lockdown.PathRule {
	rules := []lockdown.PathRule{
		{Path: "/", Access: lockdown.ReadOnly},
		{Path: "/tmp", Access: lockdown.Scratch},
		{Path: "/dev", Access: lockdown.ReadWrite},
		{Path: "/proc", Access: lockdown.ReadWrite},
		{Path: cfg.Program, Access: lockdown.Executable},
	}
	if cfg.Interp != "" {
		rules = append(rules, lockdown.PathRule{Path: cfg.Interp, Access: lockdown.Executable})
	}
	return rules
}
