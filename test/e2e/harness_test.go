// Package e2e boots real VMs (QEMU, a kernel bundle from hull's store,
// hull-init) with real programs and checks what a user would: output,
// exit codes, ports, stops, and that every attack from inside the guest
// fails.
//
// Prerequisites: qemu-system-x86_64, gcc, a kernel bundle in hull's store
// (`make kernel`), redis-server. The store's default kernel boots every
// VM unless HULL_E2E_KERNEL names another bundle by name or digest
// (`make test` runs the suite on the tuned kernel's digest, then on the
// Debian kernel). Outside CI a missing prerequisite skips with the
// reason; with CI=true it fails, because a suite that skipped did not run.
package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	hullBin    string // built for this test run
	moduleRoot string
	skipReason string // why VM tests cannot run here
	testHome   string // HULL_HOME for every hull the tests start
	// vmSlots bounds concurrent VMs: software emulation is CPU-bound.
	vmSlots = make(chan struct{}, 2)
)

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	tmp, err := os.MkdirTemp("", "hull-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(tmp)
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		fmt.Fprintln(os.Stderr, "go env GOMOD:", err)
		return 1
	}
	moduleRoot = filepath.Dir(strings.TrimSpace(string(out)))
	hullBin = filepath.Join(tmp, "bin", "hull")
	builds := [][]string{
		{"go", "build", "-trimpath", "-o", hullBin, "./cmd/hull"},
		{"go", "build", "-trimpath", "-ldflags=-s -w", "-o", filepath.Join(tmp, "bin", "hull-init"), "./cmd/hull-init"},
	}
	for i, b := range builds {
		cmd := exec.Command(b[0], b[1:]...)
		cmd.Dir = moduleRoot
		if i == 1 {
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		}
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "building %v: %v\n%s", b, err, out)
			return 1
		}
	}
	testHome = filepath.Join(tmp, "home")
	skipReason = prepareHome(testHome)
	if skipReason != "" && os.Getenv("CI") == "true" {
		fmt.Fprintln(os.Stderr, "e2e prerequisites missing under CI:", skipReason)
		return 1
	}
	return m.Run()
}

// prepareHome points the test's store at the user's kernel bundles (read
// only; with HULL_E2E_KERNEL set, at copies with that bundle as the
// default) and returns why VMs cannot run, or "".
func prepareHome(home string) string {
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		return "qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)"
	}
	src := os.Getenv("HULL_HOME")
	if src == "" {
		if x := os.Getenv("XDG_DATA_HOME"); x != "" {
			src = filepath.Join(x, "hull")
		} else {
			h, _ := os.UserHomeDir()
			src = filepath.Join(h, ".local", "share", "hull")
		}
	}
	kernels := filepath.Join(src, "kernels")
	if _, err := os.Stat(filepath.Join(kernels, "default")); err != nil {
		return "no default kernel bundle in " + kernels + " (run make kernel)"
	}
	if err := os.MkdirAll(home, 0o755); err != nil {
		return err.Error()
	}
	if want := os.Getenv("HULL_E2E_KERNEL"); want != "" {
		return selectKernel(kernels, home, want)
	}
	if err := os.Symlink(kernels, filepath.Join(home, "kernels")); err != nil {
		return err.Error()
	}
	return ""
}

// selectKernel gives the test home its own kernel store, the user's
// bundles hard-linked (or copied) in, with HULL_E2E_KERNEL (a bundle name
// or digest, e.g. tuned) as its default: every image the tests build, by
// hull build or by hull run PROGRAM, then boots that kernel. The user's
// own default is left alone.
func selectKernel(src, home, want string) string {
	dst := filepath.Join(home, "kernels")
	ents, err := os.ReadDir(src)
	if err != nil {
		return err.Error()
	}
	for _, e := range ents {
		if !e.IsDir() || len(e.Name()) != 64 {
			continue
		}
		if err := linkTree(filepath.Join(src, e.Name()), filepath.Join(dst, e.Name())); err != nil {
			return fmt.Sprintf("copying kernel bundle %s: %v", e.Name(), err)
		}
	}
	// The user's default decides between bundles of the same name.
	if def, err := os.ReadFile(filepath.Join(src, "default")); err == nil {
		if err := os.WriteFile(filepath.Join(dst, "default"), def, 0o644); err != nil {
			return err.Error()
		}
	}
	cmd := exec.Command(hullBin, "kernel", "default", want)
	cmd.Env = append(os.Environ(), "HULL_HOME="+home)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Sprintf("HULL_E2E_KERNEL=%s is not in %s (build it with make kernel-tuned): %s", want, src, strings.TrimSpace(string(out)))
	}
	return ""
}

// linkTree recreates the directory src at dst with hard links, copying
// files when linking fails (another filesystem).
func linkTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		to := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(to, 0o755)
		}
		if os.Link(p, to) == nil {
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(to, data, 0o644)
	})
}

func requireVM(t *testing.T) {
	t.Helper()
	if skipReason != "" {
		t.Skip(skipReason)
	}
}

// vmSlot waits for a free VM slot and releases it at cleanup.
func vmSlot(t *testing.T) {
	t.Helper()
	vmSlots <- struct{}{}
	t.Cleanup(func() { <-vmSlots })
}

func hullEnv() []string {
	return append(os.Environ(), "HULL_HOME="+testHome)
}

type result struct {
	stdout, stderr string
	code           int
}

// hull runs the CLI to completion (3 minutes at most).
func hull(t *testing.T, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, hullBin, args...)
	cmd.Env = hullEnv()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("running hull %v: %v", args, err)
	}
	if ctx.Err() != nil {
		t.Fatalf("hull %v timed out; stderr:\n%s", args, errb.String())
	}
	return result{out.String(), errb.String(), code}
}

// proc is a hull running in the background.
type proc struct {
	cmd  *exec.Cmd
	out  *syncBuffer
	err  *syncBuffer
	done chan struct{}
	code int
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func startHull(t *testing.T, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(hullBin, args...)
	cmd.Env = hullEnv()
	p := &proc{cmd: cmd, out: &syncBuffer{}, err: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.err
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting hull: %v", err)
	}
	go func() {
		err := cmd.Wait()
		p.code = 0
		if ee, ok := err.(*exec.ExitError); ok {
			p.code = ee.ExitCode()
		}
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			cmd.Process.Signal(syscall.SIGINT)
			select {
			case <-p.done:
			case <-time.After(20 * time.Second):
				cmd.Process.Kill()
				<-p.done
			}
		}
	})
	return p
}

// wait waits for the background hull to exit and returns its status.
func (p *proc) wait(t *testing.T, d time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
		return p.code
	case <-time.After(d):
		t.Fatalf("hull did not exit within %v; stderr:\n%s", d, p.err.String())
	}
	return -1
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, d time.Duration, what string, p *proc, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		if p != nil {
			select {
			case <-p.done:
				t.Fatalf("hull exited (%d) while waiting for %s; stdout:\n%s\nstderr:\n%s", p.code, what, p.out.String(), p.err.String())
			default:
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	msg := ""
	if p != nil {
		msg = "\nstderr:\n" + p.err.String()
	}
	t.Fatalf("timed out after %v waiting for %s%s", d, what, msg)
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func freeUDPPort(t *testing.T) int {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// goBuild builds a program from a directory under testdata (or the
// module) into the test's temp dir.
func goBuild(t *testing.T, pkg string, cgo bool, extraArgs ...string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), filepath.Base(pkg))
	args := append([]string{"build", "-trimpath", "-o", out}, extraArgs...)
	args = append(args, pkg)
	cmd := exec.Command("go", args...)
	cmd.Dir = moduleRoot
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if cgo {
		cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
	}
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
	return out
}

// gccBuild compiles a C file from testdata/csrc.
func gccBuild(t *testing.T, name string, flags ...string) string {
	t.Helper()
	if _, err := exec.LookPath("gcc"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("gcc is not installed")
		}
		t.Skip("gcc is not installed")
	}
	out := filepath.Join(t.TempDir(), strings.TrimSuffix(name, ".c"))
	args := append([]string{"-O2", "-o", out, filepath.Join(moduleRoot, "test/e2e/testdata/csrc", name)}, flags...)
	if b, err := exec.Command("gcc", args...).CombinedOutput(); err != nil {
		t.Fatalf("gcc %s: %v\n%s", name, err, b)
	}
	return out
}

// uniqueName gives each test its own image name.
func uniqueName(t *testing.T) string {
	n := strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name()))
	if len(n) > 50 {
		n = n[:50]
	}
	return n
}
