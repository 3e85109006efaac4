// Command bench measures hull the way a user meets it — through the CLI —
// and prints numbers: build time and image sizes, launch → first answer,
// where boot time goes, QEMU memory, and the smallest guest memory that
// still serves. It asserts nothing; `make bench` runs it.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hullvm/hull/internal/hostinfo"
)

var (
	hullBin = flag.String("hull", "bin/hull", "hull binary")
	runs    = flag.Int("runs", 5, "runs per boot measurement")
	kernels = flag.String("kernels", "", "comma list of kernel bundles to compare (default: the default bundle)")
	quick   = flag.Bool("quick", false, "skip the memory search")
	netOnly = flag.Bool("net", false, "only the network comparison")
)

func main() {
	flag.Parse()
	b, err := newBench()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
	defer os.RemoveAll(b.tmp)
	fmt.Printf("hull bench — %s — %s, %d cores, accelerator: %s\n\n", time.Now().Format("2006-01-02 15:04"), hostinfo.CPUModel(), runtime.NumCPU(), b.accel)
	if err := b.run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

type bench struct {
	tmp   string
	home  string
	accel string
}

func newBench() (*bench, error) {
	tmp, err := os.MkdirTemp("", "hull-bench-")
	if err != nil {
		return nil, err
	}
	b := &bench{tmp: tmp, home: filepath.Join(tmp, "home"), accel: "tcg"}
	src := os.Getenv("HULL_HOME")
	if src == "" {
		h, _ := os.UserHomeDir()
		src = filepath.Join(h, ".local", "share", "hull")
	}
	os.MkdirAll(b.home, 0o755)
	if err := os.Symlink(filepath.Join(src, "kernels"), filepath.Join(b.home, "kernels")); err != nil {
		return nil, err
	}
	if out, err := exec.Command("sh", "-c", "grep -qwE 'vmx|svm' /proc/cpuinfo && test -w /dev/kvm && echo kvm || echo tcg").Output(); err == nil {
		b.accel = strings.TrimSpace(string(out))
	}
	return b, nil
}

func (b *bench) hull(args ...string) (string, string, error) {
	cmd := exec.Command(*hullBin, args...)
	cmd.Env = append(os.Environ(), "HULL_HOME="+b.home)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err != nil {
		err = fmt.Errorf("hull %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.String(), errb.String(), err
}

func (b *bench) run() error {
	// The demo server as `go build` makes it (dynamic: os/user uses cgo)
	// and as Go servers usually ship (CGO_ENABLED=0, static).
	goServer := filepath.Join(b.tmp, "hello-server")
	goStatic := filepath.Join(b.tmp, "hello-static")
	if out, err := exec.Command("go", "build", "-trimpath", "-o", goServer, "./examples/hello-server").CombinedOutput(); err != nil {
		return fmt.Errorf("building the Go server: %v\n%s", err, out)
	}
	static := exec.Command("go", "build", "-trimpath", "-o", goStatic, "./examples/hello-server")
	static.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := static.CombinedOutput(); err != nil {
		return fmt.Errorf("building the static Go server: %v\n%s", err, out)
	}
	kernelList := []string{""}
	if *kernels != "" {
		kernelList = strings.Split(*kernels, ",")
	}
	if *netOnly {
		return b.networkSection()
	}
	for _, k := range kernelList {
		label := k
		if label == "" {
			label = "default kernel"
		}
		fmt.Printf("== kernel: %s\n", label)
		if err := b.buildSection(goServer, goStatic, k); err != nil {
			return err
		}
		if err := b.bootSection(k); err != nil {
			return err
		}
		fmt.Println()
	}
	return b.networkSection()
}

// networkSection compares the zero-trust gateway with QEMU's user
// network: the same image, the same forward, one VM each.
func (b *bench) networkSection() error {
	srv := filepath.Join(b.tmp, "netserver")
	if out, err := exec.Command("go", "build", "-trimpath", "-o", srv, "./bench/netserver").CombinedOutput(); err != nil {
		return fmt.Errorf("building the bench server: %v\n%s", err, out)
	}
	if _, _, err := b.hull("build", srv, "--name", "netserver"); err != nil {
		return err
	}
	fmt.Println("-- network: HTTP into the guest through a -p forward (same image, one VM each)")
	fmt.Printf("%-10s %12s %12s %12s\n", "network", "req/s", "MB/s down", "MB/s (64K req)")
	res := map[string][2]float64{}
	for _, netw := range []string{"user", "gateway"} {
		rps, mbps, err := b.netRun(netw)
		if err != nil {
			return err
		}
		res[netw] = [2]float64{rps, mbps}
		fmt.Printf("%-10s %12.0f %12.1f\n", netw, rps, mbps)
	}
	if u := res["user"]; u[0] > 0 && u[1] > 0 {
		g := res["gateway"]
		fmt.Printf("gateway / user: %.2fx requests/s, %.2fx MB/s\n", g[0]/u[0], g[1]/u[1])
	}
	return nil
}

// netRun boots the bench server on one network and measures keep-alive
// requests/s (4 clients, 5 s) and download MB/s (3 × 64 MiB).
func (b *bench) netRun(network string) (rps, mbps float64, err error) {
	port := freePort()
	cmd := exec.Command(*hullBin, "run", "netserver", "-p", fmt.Sprintf("%d:8080", port), "--network", network)
	cmd.Env = append(os.Environ(), "HULL_HOME="+b.home)
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		return 0, 0, err
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGINT)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
		}
	}()
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 8}}
	deadline := time.Now().Add(90 * time.Second)
	for {
		resp, err := client.Get(base + "/")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			return 0, 0, fmt.Errorf("%s network: the server never answered: %s", network, strings.TrimSpace(errb.String()))
		}
		time.Sleep(20 * time.Millisecond)
	}
	const clients = 4
	var total int64
	counts := make(chan int64, clients)
	stop := time.Now().Add(5 * time.Second)
	for i := 0; i < clients; i++ {
		go func() {
			var n int64
			for time.Now().Before(stop) {
				resp, err := client.Get(base + "/")
				if err != nil {
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				n++
			}
			counts <- n
		}()
	}
	for i := 0; i < clients; i++ {
		total += <-counts
	}
	rps = float64(total) / 5
	var bytesRead int64
	start := time.Now()
	for i := 0; i < 3; i++ {
		resp, err := client.Get(base + "/blob?mb=64")
		if err != nil {
			return 0, 0, err
		}
		n, _ := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		bytesRead += n
	}
	mbps = float64(bytesRead) / (1 << 20) / time.Since(start).Seconds()
	return rps, mbps, nil
}

type sizes struct {
	Size     int64 `json:"size"`
	Manifest struct {
		Kernel struct {
			Digest string `json:"digest"`
		} `json:"kernel"`
	} `json:"manifest"`
	Summary struct {
		Files     int      `json:"files"`
		Bytes     int64    `json:"bytes"`
		Programs  []string `json:"programs"`
		HullBytes int64    `json:"hull_bytes"`
	} `json:"summary"`
}

func (b *bench) buildSection(goServer, goStatic, kernel string) error {
	fmt.Println("-- build (warm: median of 5 after one untimed build)")
	fmt.Printf("%-16s %10s %12s %12s %14s %12s %7s %6s\n", "app", "build ms", "program", "image", "image+kernel", "hull adds", "files", "progs")
	apps := []struct{ name, prog string }{{"go-server", goServer}, {"go-static", goStatic}, {"redis-server", "/usr/bin/redis-server"}}
	for _, a := range apps {
		if _, err := os.Stat(a.prog); err != nil {
			fmt.Printf("%-16s (skipped: %s not found)\n", a.name, a.prog)
			continue
		}
		args := []string{"build", a.prog, "--name", a.name}
		if kernel != "" {
			args = append(args, "--kernel", kernel)
		}
		if _, _, err := b.hull(args...); err != nil {
			return err
		}
		var times []float64
		for i := 0; i < 5; i++ {
			start := time.Now()
			if _, _, err := b.hull(args...); err != nil {
				return err
			}
			times = append(times, float64(time.Since(start).Microseconds())/1000)
		}
		out, _, err := b.hull("inspect", a.name, "--json")
		if err != nil {
			return err
		}
		var s sizes
		if err := json.Unmarshal([]byte(out), &s); err != nil {
			return err
		}
		ksize := b.kernelSize(s.Manifest.Kernel.Digest)
		var progSize int64
		if st, err := os.Stat(a.prog); err == nil {
			progSize = st.Size()
		}
		fmt.Printf("%-16s %10.1f %12s %12s %14s %12s %7d %6d\n", a.name, median(times), mib(progSize), mib(s.Size), mib(s.Size+ksize), mib(s.Summary.HullBytes), s.Summary.Files, len(s.Summary.Programs))
	}
	return nil
}

func (b *bench) kernelSize(digest string) int64 {
	for _, name := range []string{"vmlinuz", "vmlinux", "vmlinux.zst"} {
		if st, err := os.Stat(filepath.Join(b.home, "kernels", digest, name)); err == nil {
			return st.Size()
		}
	}
	return 0
}

func (b *bench) bootSection(kernel string) error {
	for _, app := range []string{"go-server", "go-static"} {
		if err := b.bootApp(app); err != nil {
			return err
		}
	}
	if !*quick {
		lo, hi := 16, 128
		for lo < hi {
			mid := (lo + hi) / 2
			r, err := b.bootOnce("go-server", mid, false)
			if err == nil && r.firstOK > 0 {
				hi = mid
			} else {
				lo = mid + 1
			}
		}
		fmt.Printf("smallest --memory at which go-server serves: %d MiB\n", lo)
	}
	return nil
}

// bootApp boots app *runs times and reports launch → first HTTP 200 and
// where the time went.
func (b *bench) bootApp(app string) error {
	fmt.Printf("-- boot: %s, launch of hull run → first HTTP 200 (%d runs)\n", app, *runs)
	var totals []float64
	stages := map[string][]float64{}
	var rss []float64
	for i := 0; i < *runs; i++ {
		r, err := b.bootOnce(app, 0, true)
		if err != nil {
			return err
		}
		totals = append(totals, r.firstOK)
		for k, v := range r.events {
			stages[k] = append(stages[k], v)
		}
		if r.rssMiB > 0 {
			rss = append(rss, r.rssMiB)
		}
	}
	fmt.Printf("launch → first 200: min %.0f ms, median %.0f ms, max %.0f ms\n", minf(totals), median(totals), maxf(totals))
	fmt.Println("where the time goes (median ms since QEMU started; the rest before it is hull's own start):")
	for _, st := range []string{"qemu", "init", "modules-start", "modules", "network", "root", "started", "listening", "exit"} {
		if v, ok := stages[st]; ok {
			fmt.Printf("  %-14s %8.0f\n", st, median(v))
		}
	}
	if g, ok := stages["guest:init"]; ok {
		fmt.Printf("  (guest uptime at init start: median %.0f ms — kernel boot inside the VM)\n", median(g))
	}
	if len(rss) > 0 {
		fmt.Printf("QEMU RSS while serving: median %.0f MiB\n", median(rss))
	}
	return nil
}

type bootResult struct {
	firstOK float64 // ms, 0 = never
	events  map[string]float64
	rssMiB  float64
}

func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 18080
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// bootOnce launches the image and polls for HTTP 200.
func (b *bench) bootOnce(img string, memMiB int, measure bool) (*bootResult, error) {
	port := freePort()
	events := filepath.Join(b.tmp, fmt.Sprintf("events-%d.jsonl", time.Now().UnixNano()))
	args := []string{"run", img, "-p", fmt.Sprintf("%d:8080", port), "--events", events}
	if memMiB > 0 {
		args = append(args, "--memory", fmt.Sprintf("%dM", memMiB))
	}
	cmd := exec.Command(*hullBin, args...)
	cmd.Env = append(os.Environ(), "HULL_HOME="+b.home)
	var errb bytes.Buffer
	cmd.Stderr = &errb
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	res := &bootResult{events: map[string]float64{}}
	client := &http.Client{Timeout: time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
poll:
	for ctx.Err() == nil {
		select {
		case <-done:
			break poll
		default:
		}
		resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d/", port))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				res.firstOK = float64(time.Since(start).Microseconds()) / 1000
				break
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	if measure && res.firstOK > 0 {
		res.rssMiB = qemuRSS(cmd.Process.Pid)
	}
	cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		<-done
	}
	if f, err := os.Open(events); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var e struct {
				Name   string  `json:"name"`
				AtMS   float64 `json:"at_ms"`
				Uptime float64 `json:"guest_uptime"`
			}
			if json.Unmarshal(sc.Bytes(), &e) == nil {
				if _, seen := res.events[e.Name]; !seen {
					res.events[e.Name] = e.AtMS
					if e.Uptime > 0 {
						res.events["guest:"+e.Name] = e.Uptime * 1000
					}
				}
			}
		}
		f.Close()
	}
	if measure && res.firstOK == 0 {
		return nil, fmt.Errorf("the server never answered: %s", strings.TrimSpace(errb.String()))
	}
	return res, nil
}

// qemuRSS finds hull's QEMU child and reads its resident set.
func qemuRSS(hullPID int) float64 {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", hullPID))
	for _, t := range tasks {
		b, _ := os.ReadFile(t)
		for _, c := range strings.Fields(string(b)) {
			status, err := os.ReadFile("/proc/" + c + "/status")
			if err != nil || !strings.Contains(string(status), "qemu") {
				continue
			}
			for _, line := range strings.Split(string(status), "\n") {
				if strings.HasPrefix(line, "VmRSS:") {
					f := strings.Fields(line)
					kb, _ := strconv.ParseFloat(f[1], 64)
					return kb / 1024
				}
			}
		}
	}
	return 0
}

func mib(n int64) string { return fmt.Sprintf("%.2f MiB", float64(n)/(1<<20)) }

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return s[len(s)/2]
}

func minf(v []float64) float64 {
	m := v[0]
	for _, x := range v {
		if x < m {
			m = x
		}
	}
	return m
}

func maxf(v []float64) float64 {
	m := v[0]
	for _, x := range v {
		if x > m {
			m = x
		}
	}
	return m
}
