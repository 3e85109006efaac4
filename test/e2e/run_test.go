package e2e

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A Go HTTP server answers through -p, as the app user, and stops
// cleanly on Ctrl-C.
func TestGoHTTPServerThroughPort(t *testing.T) {
	requireVM(t)
	t.Parallel()
	vmSlot(t)
	bin := goBuild(t, "./examples/hello-server", true)
	port := freePort(t)
	p := startHull(t, "run", bin, "-p", fmt.Sprintf("%d:8080", port))
	var body string
	waitFor(t, 90*time.Second, "an HTTP answer", p, func() bool {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/", port))
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		body = string(b)
		return resp.StatusCode == 200
	})
	if !strings.Contains(body, "running as app inside a hull VM") {
		t.Errorf("body = %q, want the server's greeting naming the app user", body)
	}
	p.cmd.Process.Signal(syscall.SIGINT)
	if code := p.wait(t, 30*time.Second); code != 0 {
		t.Errorf("hull exit = %d, want 0 (the server exits 0 on SIGTERM); stderr:\n%s", code, p.err.String())
	}
	if !strings.Contains(p.err.String(), "SIGTERM: shutting down") || !strings.Contains(p.err.String(), "bye") {
		t.Errorf("the server's shutdown log did not arrive; stderr:\n%s", p.err.String())
	}
}

// A dynamically linked C program's stdout and stderr both arrive, each
// on its own stream, and its exit status becomes hull's.
func TestCProgramStreamsAndExitCode(t *testing.T) {
	requireVM(t)
	t.Parallel()
	vmSlot(t)
	bin := gccBuild(t, "streams.c")
	r := hull(t, "run", bin)
	if r.code != 3 {
		t.Fatalf("exit = %d, want 3; stderr:\n%s", r.code, r.stderr)
	}
	if r.stdout != "to stdout\n" {
		t.Errorf("stdout = %q, want %q", r.stdout, "to stdout\n")
	}
	if !strings.Contains(r.stderr, "to stderr\n") || strings.Contains(r.stdout, "to stderr") {
		t.Errorf("stderr = %q, want it to hold the app's stderr line (and stdout not to)", r.stderr)
	}
	if strings.Contains(r.stdout, "[") && strings.Contains(r.stdout, "]") {
		t.Errorf("kernel messages leaked into stdout: %q", r.stdout)
	}
}

// Ctrl-C gives the app SIGTERM and time to flush; a second Ctrl-C kills
// the VM at once when the app ignores SIGTERM (C9).
func TestStopFlushesThenSecondInterruptKills(t *testing.T) {
	requireVM(t)
	t.Parallel()
	vmSlot(t)
	bin := gccBuild(t, "flush.c")
	t.Run("graceful", func(t *testing.T) {
		p := startHull(t, "run", bin)
		waitFor(t, 90*time.Second, "the app to be ready", p, func() bool { return strings.Contains(p.err.String(), "ready") })
		p.cmd.Process.Signal(syscall.SIGINT)
		if code := p.wait(t, 30*time.Second); code != 0 {
			t.Errorf("exit = %d, want 0; stderr:\n%s", code, p.err.String())
		}
		if p.out.String() != "flushed\n" {
			t.Errorf("stdout = %q, want the line the app flushed on SIGTERM", p.out.String())
		}
	})
	t.Run("forced", func(t *testing.T) {
		p := startHull(t, "run", "--stop-timeout", "60s", bin, "--", "ignore")
		waitFor(t, 90*time.Second, "the app to be ready", p, func() bool { return strings.Contains(p.err.String(), "ready") })
		p.cmd.Process.Signal(syscall.SIGINT)
		waitFor(t, 10*time.Second, "the stop message", p, func() bool { return strings.Contains(p.err.String(), "stopping") })
		start := time.Now()
		p.cmd.Process.Signal(syscall.SIGINT)
		code := p.wait(t, 30*time.Second)
		if code != 137 {
			t.Errorf("exit = %d, want 137 (killed); stderr:\n%s", code, p.err.String())
		}
		if time.Since(start) > 20*time.Second {
			t.Errorf("second Ctrl-C took %v; it must not wait for the 60s grace period", time.Since(start))
		}
	})
}

type probeReport struct {
	Localhost   []string          `json:"localhost"`
	Hostname    string            `json:"hostname"`
	HostnameIPs []string          `json:"hostname_ips"`
	HostAlias   []string          `json:"host_alias"`
	CACerts     int               `json:"ca_certs"`
	CAErr       string            `json:"ca_err"`
	OpenSSLCA   bool              `json:"openssl_ca"`
	User        string            `json:"user"`
	UID         string            `json:"uid"`
	Home        string            `json:"home"`
	HomeDir     string            `json:"home_dir"`
	UserErr     string            `json:"user_err"`
	WriteRoot   string            `json:"write_root"`
	WriteEtc    string            `json:"write_etc"`
	TmpFill     string            `json:"tmp_fill"`
	TmpWritten  int64             `json:"tmp_written"`
	TmpExecMode string            `json:"tmp_exec"`
	EnvHex      map[string]string `json:"env_hex"`
	Cwd         string            `json:"cwd"`
}

// What ordinary programs expect inside the guest: glibc name resolution
// (C3), a CA store (C4), a user and home (C5), a read-only root and a
// bounded /tmp whose "full" is the app's error (C10), environment values
// delivered byte-exact (C11).
func TestGuestEnvironment(t *testing.T) {
	requireVM(t)
	t.Parallel()
	vmSlot(t)
	bin := goBuild(t, "./test/e2e/testdata/probe", true)
	env := map[string]string{"URL": "postgres://u:p@h/db?a=b=c", "SPACES": "  two  spaces ", "UNI": "ünïcödé ✓", "EMPTY": ""}
	args := []string{"run", bin, "-e", "GODEBUG=netdns=cgo"}
	for k, v := range env {
		args = append(args, "-e", k+"="+v)
	}
	name := uniqueName(t)
	b := hull(t, "build", bin, "--name", name, "--tmp-size", "8M")
	if b.code != 0 {
		t.Fatalf("build: %s", b.stderr)
	}
	args[1] = name
	r := hull(t, args...)
	if r.code != 0 {
		t.Fatalf("exit = %d; stderr:\n%s", r.code, r.stderr)
	}
	var got probeReport
	if err := json.Unmarshal([]byte(strings.TrimSpace(r.stdout)), &got); err != nil {
		t.Fatalf("probe output %q: %v", r.stdout, err)
	}
	if len(got.Localhost) == 0 {
		got.Localhost = []string{"(nothing)"}
	}
	checks := []struct {
		what      string
		got, want any
	}{
		{"localhost resolves (C3)", got.Localhost[0], "127.0.0.1"},
		{"own hostname resolves (C3)", strings.Join(got.HostnameIPs, ","), "10.0.2.15"},
		{"host alias resolves", strings.Join(got.HostAlias, ","), "10.0.2.2"},
		{"CA store loads (C4)", got.CAErr == "" && got.CACerts > 50, true},
		{"OpenSSL default CA file (C4)", got.OpenSSLCA, true},
		{"user.Current (C5)", got.User + "/" + got.UID + "/" + got.UserErr, "app/1000/"},
		{"home dir (C5)", got.Home + " " + got.HomeDir, "/home/app /home/app"},
		{"write to / (C10)", got.WriteRoot, "EROFS"},
		{"write to /etc (C10)", got.WriteEtc, "EROFS"},
		{"fill /tmp (C10)", got.TmpFill, "ENOSPC"},
		{"cwd", got.Cwd, "/"},
	}
	for _, c := range checks {
		if fmt.Sprint(c.got) != fmt.Sprint(c.want) {
			t.Errorf("%s: got %v, want %v", c.what, c.got, c.want)
		}
	}
	if got.TmpWritten < 6<<20 || got.TmpWritten > 8<<20 {
		t.Errorf("/tmp took %d bytes before ENOSPC, want about the declared 8M", got.TmpWritten)
	}
	if got.Hostname != name {
		t.Errorf("hostname = %q, want the image name %q", got.Hostname, name)
	}
	for k, v := range env {
		if got.EnvHex[k] != hex.EncodeToString([]byte(v)) {
			t.Errorf("env %s arrived as %q (hex), want %q byte-exact (C11)", k, got.EnvHex[k], hex.EncodeToString([]byte(v)))
		}
	}
	// The run-time environment is never stored: the image's manifest
	// must not hold it.
	insp := hull(t, "inspect", name, "--json")
	if strings.Contains(insp.stdout, "postgres://") {
		t.Errorf("a run-time -e value was written into the image")
	}
}

// glibc's own resolver (not Go's) finds localhost, the hostname and the
// host alias through the generated files and NSS modules (C3).
func TestGlibcGetaddrinfo(t *testing.T) {
	requireVM(t)
	t.Parallel()
	vmSlot(t)
	bin := gccBuild(t, "getaddr.c")
	name := uniqueName(t)
	if b := hull(t, "build", bin, "--name", name); b.code != 0 {
		t.Fatalf("build: %s", b.stderr)
	}
	r := hull(t, "run", name)
	want := fmt.Sprintf("localhost: 127.0.0.1\n%s: 10.0.2.15\nhost.hull.internal: 10.0.2.2\n", name)
	if r.code != 0 || r.stdout != want {
		t.Errorf("exit %d, stdout %q; want 0 and %q; stderr:\n%s", r.code, r.stdout, want, r.stderr)
	}
}

// A server bound to the guest's loopback cannot be reached through a
// forward; hull says why instead of leaving the user with a hang (C7).
func TestLoopbackBindWarns(t *testing.T) {
	requireVM(t)
	t.Parallel()
	vmSlot(t)
	bin := goBuild(t, "./examples/hello-server", false)
	port := freePort(t)
	p := startHull(t, "run", bin, "-p", fmt.Sprintf("%d:8080", port), "--", "127.0.0.1:8080")
	waitFor(t, 90*time.Second, "the loopback warning", p, func() bool {
		return strings.Contains(p.err.String(), "listens on 127.0.0.1:8080/tcp inside the VM")
	})
	if !strings.Contains(p.err.String(), "0.0.0.0:8080") {
		t.Errorf("the warning should say how to fix it (listen on 0.0.0.0:8080); stderr:\n%s", p.err.String())
	}
}

// A UDP server is reachable with -p host:guest/udp (C8).
func TestUDPForward(t *testing.T) {
	requireVM(t)
	t.Parallel()
	vmSlot(t)
	bin := goBuild(t, "./test/e2e/testdata/udpecho", false)
	port := freeUDPPort(t)
	p := startHull(t, "run", bin, "-p", fmt.Sprintf("%d:5353/udp", port))
	waitFor(t, 90*time.Second, "the echo server", p, func() bool { return strings.Contains(p.err.String(), "listening") })
	c, err := net.Dial("udp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var got string
	waitFor(t, 30*time.Second, "an echo", p, func() bool {
		c.SetDeadline(time.Now().Add(500 * time.Millisecond))
		c.Write([]byte("ping-udp"))
		buf := make([]byte, 64)
		n, err := c.Read(buf)
		if err != nil {
			return false
		}
		got = string(buf[:n])
		return true
	})
	if got != "echo: ping-udp" {
		t.Errorf("reply = %q, want %q", got, "echo: ping-udp")
	}
}

// Debian's redis-server, a real dynamically linked multi-threaded server,
// answers PING, SET and GET through the forward.
func TestRedisServer(t *testing.T) {
	requireVM(t)
	if _, err := exec.LookPath("redis-server"); err != nil {
		skipOrFail(t, "redis-server is not installed (apt-get install redis-server)")
	}
	if _, err := exec.LookPath("redis-cli"); err != nil {
		skipOrFail(t, "redis-cli is not installed (apt-get install redis-tools)")
	}
	t.Parallel()
	vmSlot(t)
	name := uniqueName(t)
	b := hull(t, "build", "/usr/bin/redis-server", "--name", name, "--",
		"--port", "6379", "--protected-mode", "no", "--save", "", "--appendonly", "no", "--io-threads", "2")
	if b.code != 0 {
		t.Fatalf("build: %s", b.stderr)
	}
	port := freePort(t)
	p := startHull(t, "run", name, "-p", fmt.Sprintf("%d:6379", port), "--memory", "128M")
	cli := func(args ...string) string {
		out, _ := exec.Command("redis-cli", append([]string{"-p", fmt.Sprint(port)}, args...)...).CombinedOutput()
		return strings.TrimSpace(string(out))
	}
	waitFor(t, 90*time.Second, "PONG", p, func() bool { return cli("PING") == "PONG" })
	if got := cli("SET", "greeting", "hello hull"); got != "OK" {
		t.Errorf("SET = %q, want OK", got)
	}
	if got := cli("GET", "greeting"); got != "hello hull" {
		t.Errorf("GET = %q, want %q", got, "hello hull")
	}
	p.cmd.Process.Signal(syscall.SIGINT)
	if code := p.wait(t, 30*time.Second); code != 0 {
		t.Errorf("redis exit = %d, want 0 after SIGTERM; stderr:\n%s", code, p.err.String())
	}
	if strings.Contains(p.err.String(), "blocked:") {
		t.Errorf("redis tripped the lockdown:\n%s", p.err.String())
	}
}

func skipOrFail(t *testing.T, reason string) {
	t.Helper()
	if isCI() {
		t.Fatal(reason)
	}
	t.Skip(reason)
}

// QEMU dying under hull is reported in one clear line, and leaves no
// process, socket or temp file behind.
func TestQEMUDeathIsReportedAndCleanedUp(t *testing.T) {
	requireVM(t)
	t.Parallel()
	vmSlot(t)
	bin := goBuild(t, "./examples/hello-server", false)
	runtimeDir := t.TempDir()
	port := freePort(t)
	cmd := exec.Command(hullBin, "run", bin, "-p", fmt.Sprintf("%d:8080", port))
	cmd.Env = append(hullEnv(), "XDG_RUNTIME_DIR="+runtimeDir)
	var errb syncBuffer
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	waitFor(t, 90*time.Second, "the server", nil, func() bool {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/", port))
		if err == nil {
			resp.Body.Close()
		}
		return err == nil
	})
	qemuPID := childQEMU(t, cmd.Process.Pid)
	syscall.Kill(qemuPID, syscall.SIGKILL)
	select {
	case err := <-done:
		ee, ok := err.(*exec.ExitError)
		if !ok || ee.ExitCode() != 125 {
			t.Errorf("hull exit = %v, want status 125", err)
		}
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatal("hull did not exit after its QEMU died")
	}
	if !strings.Contains(errb.String(), "the VM stopped before the app reported an exit status") {
		t.Errorf("stderr does not explain what happened:\n%s", errb.String())
	}
	left, _ := filepath.Glob(filepath.Join(runtimeDir, "hull", "*"))
	if len(left) != 0 {
		t.Errorf("runtime files left behind: %v", left)
	}
	if err := syscall.Kill(qemuPID, 0); err == nil {
		t.Errorf("QEMU (pid %d) still exists", qemuPID)
	}
}

// childQEMU finds the qemu process hull started.
func childQEMU(t *testing.T, hullPID int) int {
	t.Helper()
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", hullPID))
	for _, task := range tasks {
		b, _ := os.ReadFile(task)
		for _, f := range strings.Fields(string(b)) {
			comm, _ := os.ReadFile("/proc/" + f + "/comm")
			if strings.HasPrefix(string(comm), "qemu") {
				pid, _ := strconv.Atoi(f)
				return pid
			}
		}
	}
	t.Fatalf("no qemu child of hull (pid %d)", hullPID)
	return 0
}

// Debian's nginx serves a page, with a config that keeps it to one
// process and writable paths under /tmp.
func TestNginx(t *testing.T) {
	requireVM(t)
	if _, err := os.Stat("/usr/sbin/nginx"); err != nil {
		skipOrFail(t, "nginx is not installed (apt-get install nginx)")
	}
	t.Parallel()
	vmSlot(t)
	td := filepath.Join(moduleRoot, "test/e2e/testdata/nginx")
	name := uniqueName(t)
	b := hull(t, "build", "/usr/sbin/nginx", "--name", name,
		"--add", filepath.Join(td, "nginx.conf")+":/etc/nginx/hull.conf",
		"--add", filepath.Join(td, "www")+":/srv/www",
		"--", "-c", "/etc/nginx/hull.conf", "-e", "stderr")
	if b.code != 0 {
		t.Fatalf("build: %s", b.stderr)
	}
	port := freePort(t)
	p := startHull(t, "run", name, "-p", fmt.Sprintf("%d:8080", port))
	var body string
	waitFor(t, 90*time.Second, "nginx to answer", p, func() bool {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/", port))
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		bb, _ := io.ReadAll(resp.Body)
		body = string(bb)
		return resp.StatusCode == 200
	})
	if !strings.Contains(body, "served by Debian's nginx inside a hull VM") {
		t.Errorf("body = %q", body)
	}
	waitFor(t, 10*time.Second, "the access log line on stdout", p, func() bool {
		return strings.Contains(p.out.String(), `"GET / HTTP/1.1" 200`)
	})
	if strings.Contains(p.err.String(), "blocked:") {
		t.Errorf("nginx tripped the lockdown:\n%s", p.err.String())
	}
}

// Python's subprocess gets a PermissionError it can handle; the program
// carries on and the attempt is reported (C6).
func TestPythonSubprocessRefusedCleanly(t *testing.T) {
	requireVM(t)
	py, err := filepath.EvalSymlinks("/usr/bin/python3")
	if err != nil {
		skipOrFail(t, "python3 is not installed")
	}
	lib := "/usr/lib/" + filepath.Base(py)
	if _, err := os.Stat(lib); err != nil {
		skipOrFail(t, "no standard library at "+lib)
	}
	t.Parallel()
	vmSlot(t)
	script := filepath.Join(moduleRoot, "test/e2e/testdata/spawn.py")
	name := uniqueName(t)
	b := hull(t, "build", "/usr/bin/python3", "--name", name, "--add", lib+":"+lib,
		"--add", script+":/srv/spawn.py", "--", "-S", "/srv/spawn.py")
	if b.code != 0 {
		t.Fatalf("build: %s", b.stderr)
	}
	r := hull(t, "run", name)
	if r.code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", r.code, r.stderr)
	}
	for _, want := range []string{"subprocess: PermissionError 1", "still running"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, r.stdout)
		}
	}
	if !strings.Contains(r.stderr, "hull: blocked:") {
		t.Errorf("the refused spawn was not reported:\n%s", r.stderr)
	}
}
