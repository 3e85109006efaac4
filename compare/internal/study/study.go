// Package study runs the whole `make compare` measurement: it builds both
// contenders (hull images through the hull CLI; the traditional Debian
// server VM through package traditional), boots each the same number of
// times, alternating so load on the machine falls on both alike, and
// fills a report.Result. Every number in the result is measured here, in
// this run.
//
// VMs run one at a time. Nothing listens or is dialled anywhere but
// 127.0.0.1. Both VMs get the same network path: hull's zero-trust
// gateway (package netgw) with no egress rules and one forward from
// 127.0.0.1 — hull run's default, and for the traditional VM a gateway
// package traditional starts the same way. Before measuring, Run checks
// that the two VMs' QEMU machine, kernel command line and NIC agree.
// (QEMU's user network, the other choice, stalls under redis-benchmark's
// 50 connections on this emulated machine, for both VMs alike.)
package study

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/hullvm/hull/compare/internal/hullcli"
	"github.com/hullvm/hull/compare/internal/measure"
	"github.com/hullvm/hull/compare/internal/redteam"
	"github.com/hullvm/hull/compare/internal/report"
	"github.com/hullvm/hull/compare/internal/traditional"
	"github.com/hullvm/hull/internal/dirs"
	"github.com/hullvm/hull/internal/hostinfo"
	"github.com/hullvm/hull/internal/kernel"
	"github.com/hullvm/hull/internal/surface"
	"github.com/hullvm/hull/internal/vmm/qemu"
)

// Config says how to run the comparison.
type Config struct {
	ModuleRoot string // the hull checkout (examples and probes are built from it)
	HullBin    string // bin/hull
	CacheDir   string // the traditional root (built once) and a failed boot's console
	// Kernel names the kernel bundle both sides boot (name or digest);
	// "" is the store's default.
	Kernel    string
	Runs      int // boots per measurement and side
	MemoryMiB int
	CPUs      int
	Requests  int // redis-benchmark -n
	// Log receives progress lines (not results).
	Log io.Writer
}

// BootTraditional builds the traditional VM like Run does and boots it
// with app (redis, http, guestinfo, redteam), forwarding 127.0.0.1:hostPort
// to guestPort, until ctx ends; the console goes to cfg.Log. It is for
// looking at the contender by hand.
func BootTraditional(ctx context.Context, cfg Config, app string, hostPort, guestPort int) error {
	tmp, err := os.MkdirTemp("", "hull-compare-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	s := &study{cfg: cfg, tmp: tmp, res: &report.Result{}}
	def, payloads, err := s.prepareCommon(ctx)
	if err != nil {
		return err
	}
	if err := s.prepareTraditional(ctx, def, payloads); err != nil {
		return err
	}
	vm, err := traditional.Boot(ctx, s.vmConfig(app, hostPort, guestPort))
	if err != nil {
		return err
	}
	defer vm.Stop()
	s.logf("traditional VM: %s", qemu.Quote(append([]string{s.qemuBin}, traditional.Args(s.vmConfig(app, hostPort, guestPort))...)))
	printed := 0
	for {
		c := vm.Console()
		fmt.Fprint(cfg.Log, c[printed:])
		printed = len(c)
		select {
		case <-ctx.Done():
			return nil
		case <-vm.Exited():
			fmt.Fprint(cfg.Log, vm.Console()[printed:])
			return nil
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// EnsureRoot builds the traditional root into the cache, or finds it
// there, and does nothing else.
func EnsureRoot(ctx context.Context, cfg Config) error {
	ro := traditional.DefaultRootOptions(cfg.CacheDir)
	ro.Log = cfg.Log
	_, err := traditional.EnsureRoot(ctx, ro)
	return err
}

// Guest ports.
const (
	redisPort = 6379
	httpPort  = 8080
)

// Timeouts under emulation on a busy two-core machine.
const (
	bootTimeout    = 3 * time.Minute
	redTeamTimeout = 10 * time.Minute
	benchTimeout   = 15 * time.Minute
)

type study struct {
	cfg     Config
	tmp     string
	hull    *hullcli.CLI
	qemuBin string
	kernels string // the real kernel store
	accel   string
	tscKHz  int64
	stage1  string
	disk    string
	bundle  *kernel.Bundle // the kernel bundle both sides boot
	kfile   string         // its kernel as QEMU loads it (unpacked)
	res     *report.Result
}

// Run measures both sides and returns the result.
func Run(ctx context.Context, cfg Config) (*report.Result, error) {
	if cfg.Log == nil {
		cfg.Log = io.Discard
	}
	if cfg.Runs < 1 || cfg.MemoryMiB < 1 || cfg.CPUs < 1 || cfg.Requests < 1 {
		return nil, fmt.Errorf("runs, memory, cpus and requests must be positive (got %d, %d, %d, %d)", cfg.Runs, cfg.MemoryMiB, cfg.CPUs, cfg.Requests)
	}
	start := time.Now()
	res := &report.Result{Started: start}
	res.Host = report.Host{CPU: hostinfo.CPUModel(), Cores: runtime.NumCPU(), LoadStart: loadAvg()}
	res.Setup = report.Setup{MemoryMiB: cfg.MemoryMiB, CPUs: cfg.CPUs, Runs: cfg.Runs, Requests: cfg.Requests}
	tmp, err := os.MkdirTemp("", "hull-compare-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	s := &study{cfg: cfg, tmp: tmp, res: res}
	if err := s.prepare(ctx); err != nil {
		return nil, err
	}
	if err := s.measure(ctx); err != nil {
		return nil, err
	}
	res.ComputeRatios()
	res.Summary = res.SummaryLine()
	res.Host.LoadEnd = loadAvg()
	res.ElapsedSec = time.Since(start).Seconds()
	return res, nil
}

func (s *study) logf(format string, a ...any) {
	fmt.Fprintf(s.cfg.Log, "compare: "+format+"\n", a...)
}

// prepare builds everything both sides boot.
func (s *study) prepare(ctx context.Context) error {
	def, payloads, err := s.prepareCommon(ctx)
	if err != nil {
		return err
	}
	if err := s.prepareHull(ctx, def, payloads); err != nil {
		return err
	}
	if err := s.prepareTraditional(ctx, def, payloads); err != nil {
		return err
	}
	return s.checkSameVM(ctx)
}

// prepareCommon finds QEMU and the kernel bundle and builds the programs
// both sides run (name → path).
func (s *study) prepareCommon(ctx context.Context) (*kernel.Bundle, map[string]string, error) {
	var err error
	if s.qemuBin, err = qemu.Binary(); err != nil {
		return nil, nil, err
	}
	accel, why, err := qemu.ChooseAccel("auto")
	if err != nil {
		return nil, nil, err
	}
	s.accel = accel
	s.res.Host.Accel = why
	if accel == qemu.AccelTCG {
		s.tscKHz = qemu.TSCkHz()
	}
	for _, tool := range []string{"redis-cli", "redis-benchmark"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, nil, fmt.Errorf("%s is not installed: apt-get install redis-tools (make compare does)", tool)
		}
	}
	data, err := dirs.Data()
	if err != nil {
		return nil, nil, err
	}
	s.kernels = dirs.Kernels(data)
	store := &kernel.Store{Dir: s.kernels}
	def, err := store.Get(s.cfg.Kernel)
	if err != nil {
		return nil, nil, fmt.Errorf("kernel bundle %q in %s: %w (run make kernel)", s.cfg.Kernel, s.kernels, err)
	}
	if err := def.Verify(); err != nil {
		return nil, nil, err
	}
	if err := traditional.CheckKernel(def); err != nil {
		return nil, nil, err
	}
	s.bundle = def
	s.res.Setup.Kernel, s.res.Setup.KernelDigest, s.res.Setup.KernelSHA256 = def.Name, def.Digest, def.KernelSHA256
	if d, err := store.Get(""); err == nil {
		s.res.Setup.KernelIsDefault = d.Digest == def.Digest
	}

	// The programs both sides run.
	bins := filepath.Join(s.tmp, "bin")
	progs := []struct{ name, pkg, cgo string }{
		{"hello-server", "./examples/hello-server", ""},
		{"redteam", "./test/e2e/testdata/redteam", "0"},
		{"guestinfo", "./compare/testdata/guestinfo", "0"},
	}
	payloads := map[string]string{}
	for _, p := range progs {
		out := filepath.Join(bins, p.name)
		cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", out, p.pkg)
		cmd.Dir = s.cfg.ModuleRoot
		cmd.Env = os.Environ()
		if p.cgo != "" {
			cmd.Env = append(cmd.Env, "CGO_ENABLED="+p.cgo)
		}
		if b, err := cmd.CombinedOutput(); err != nil {
			return nil, nil, fmt.Errorf("go build %s: %w\n%s", p.pkg, err, b)
		}
		payloads[p.name] = out
	}
	return def, payloads, nil
}

// prepareHull builds the hull images and reads their surface.
func (s *study) prepareHull(ctx context.Context, def *kernel.Bundle, payloads map[string]string) error {
	var err error

	// hull: images in a private home that boots the real kernel store.
	s.logf("hull: building images (redis, hello-server, redteam, guestinfo)")
	if s.hull, err = hullcli.New(s.cfg.HullBin, s.tmp, s.kernels); err != nil {
		return err
	}
	builds := [][]string{
		{"/usr/bin/redis-server", "--name", "redis", "--", "--port", "6379", "--protected-mode", "no", "--save", "", "--appendonly", "no"},
		{payloads["hello-server"], "--name", "hello-server"},
		{payloads["redteam"], "--name", "redteam"},
		{payloads["guestinfo"], "--name", "guestinfo"},
	}
	for _, b := range builds {
		// --kernel pins the bundle; the trailing "--" args stay last.
		args := append([]string{"build", "--kernel", def.Digest}, b...)
		if _, _, err := s.hull.Run(ctx, args...); err != nil {
			return err
		}
	}
	redis, err := s.hull.Inspect(ctx, "redis")
	if err != nil {
		return err
	}
	if redis.Manifest.Kernel.Digest != def.Digest {
		return fmt.Errorf("hull built redis for kernel %s, not bundle %s", redis.Manifest.Kernel.Digest, def.Digest)
	}
	http, err := s.hull.Inspect(ctx, "hello-server")
	if err != nil {
		return err
	}
	s.res.Hull.Surface = report.SurfaceFrom(redis.Summary.Report)
	hs := report.SurfaceFrom(http.Summary.Report)
	s.res.Hull.SurfaceHTTP = &hs
	for _, f := range redis.Manifest.System {
		s.res.Hull.Outside = append(s.res.Hull.Outside, report.OutsideFile{Path: f.Path, Size: f.Size, Why: f.Reason})
		s.res.Hull.OutsideBytes += f.Size
	}
	s.res.Setup.RedisHull = "redis-server " + dpkgVersion(ctx, "redis-server") + " from the host"
	return nil
}

// prepareTraditional builds the Debian root (once), its disk and stage 1,
// and scans the root's surface.
func (s *study) prepareTraditional(ctx context.Context, def *kernel.Bundle, payloads map[string]string) error {
	ro := traditional.DefaultRootOptions(s.cfg.CacheDir)
	ro.Log = s.cfg.Log
	root, err := traditional.EnsureRoot(ctx, ro)
	if err != nil {
		return err
	}
	s.res.Setup.RedisTraditional = "redis-server " + root.Versions["redis-server"] + " from Debian's archive"
	if err := traditional.PrepareRoot(root, payloads); err != nil {
		return err
	}
	files, err := surface.ScanDir(root.Dir)
	if err != nil {
		return fmt.Errorf("scanning the traditional root: %w", err)
	}
	s.res.Traditional.Surface = report.SurfaceFrom(surface.Classify(report.Without(files, traditional.PayloadDir)))
	// hull run unpacks a compressed kernel at every launch; the
	// traditional VM's is unpacked once, like its disk and stage 1.
	if s.kfile, err = s.bundle.BootKernel(s.tmp); err != nil {
		return err
	}
	s.logf("traditional: writing the ext4 root disk")
	s.disk = filepath.Join(s.tmp, "root.img")
	if err := traditional.MakeDisk(ctx, root, s.disk); err != nil {
		return err
	}
	s.stage1 = filepath.Join(s.tmp, "stage1.cpio")
	f, err := os.Create(s.stage1)
	if err != nil {
		return err
	}
	st1, err := traditional.WriteStage1(f, root.Dir, s.bundle)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	for _, f := range st1 {
		s.res.Traditional.Outside = append(s.res.Traditional.Outside, report.OutsideFile{Path: f.Path, Size: f.Size})
		s.res.Traditional.OutsideBytes += f.Size
	}
	mods := "no modules (drivers built in)"
	if len(s.bundle.Modules) > 0 {
		var names []string
		for _, m := range s.bundle.Modules {
			names = append(names, m.Name)
		}
		mods = "the bundle's modules (" + strings.Join(names, " ") + ")"
	}
	s.res.Setup.TraditionalBoot = fmt.Sprintf("Debian %s minbase + apt-get install %s, ext4 root disk (virtio-blk, snapshot=on), "+
		"stage-1 initramfs loading %s, then /sbin/init (a shell script; no systemd, so none of redis-server.service's sandboxing) "+
		"starts the service as its own user",
		ro.Suite, strings.Join(ro.Packages, " "), mods)
	return nil
}

func (s *study) vmConfig(app string, hostPort, guestPort int) traditional.VMConfig {
	return traditional.VMConfig{
		QEMU: s.qemuBin, Accel: s.accel, Kernel: s.kfile, Boot: s.bundle.Boot, Initrd: s.stage1, Disk: s.disk,
		App: app, TSCkHz: s.tscKHz, MemoryMiB: int64(s.cfg.MemoryMiB), CPUs: s.cfg.CPUs,
		HostPort: hostPort, GuestPort: guestPort, SockDir: s.tmp,
	}
}

// runFlags are the `hull run` flags every boot of image gets: the
// machine size and the gateway network (hull's default, named so a
// changed default cannot change the comparison), with the flow log kept
// out of the user's state directory.
func (s *study) runFlags(image string) []string {
	return []string{"--memory", fmt.Sprintf("%dM", s.cfg.MemoryMiB), "--cpus", strconv.Itoa(s.cfg.CPUs),
		"--network", "gateway", "--flow-log", filepath.Join(s.tmp, "flows-"+image+".jsonl")}
}

// waitKind says what answers first: a Redis PING or an HTTP 200.
type waitKind int

const (
	waitPing waitKind = iota
	waitHTTP
)

func wait(ctx context.Context, kind waitKind, start time.Time, port int, exited <-chan struct{}) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, bootTimeout)
	defer cancel()
	if kind == waitHTTP {
		return measure.WaitHTTP(ctx, start, port, exited)
	}
	return measure.WaitPing(ctx, start, port, exited)
}

// bootHull starts `hull run image` with a forward and waits for the
// first answer. The caller stops the returned process.
func (s *study) bootHull(ctx context.Context, image string, guestPort int, kind waitKind) (*hullcli.Proc, int, time.Duration, error) {
	port, err := measure.FreePort()
	if err != nil {
		return nil, 0, 0, err
	}
	args := append([]string{"run", image, "-p", fmt.Sprintf("%d:%d", port, guestPort)}, s.runFlags(image)...)
	p, err := s.hull.Start(args...)
	if err != nil {
		return nil, 0, 0, err
	}
	d, err := wait(ctx, kind, p.Started, port, p.Exited())
	if err != nil {
		p.Stop(20 * time.Second)
		_, stderr := p.Output()
		return nil, 0, 0, fmt.Errorf("hull run %s: %w; hull said: %s", image, err, tail(stderr, 5))
	}
	return p, port, d, nil
}

// bootTrad boots the traditional VM with app and waits for the first
// answer. The caller stops the returned VM.
func (s *study) bootTrad(ctx context.Context, app string, guestPort int, kind waitKind) (*traditional.VM, int, time.Duration, error) {
	port, err := measure.FreePort()
	if err != nil {
		return nil, 0, 0, err
	}
	vm, err := traditional.Boot(ctx, s.vmConfig(app, port, guestPort))
	if err != nil {
		return nil, 0, 0, err
	}
	d, err := wait(ctx, kind, vm.Started, port, vm.Exited())
	if err != nil {
		vm.Stop()
		return nil, 0, 0, fmt.Errorf("traditional VM (%s): %w; console (all of it in %s): %s; qemu: %s",
			app, err, s.saveConsole(vm), tail(vm.Console(), 4), tail(vm.Stderr(), 3))
	}
	return vm, port, d, nil
}

// saveConsole keeps a failed traditional boot's console for diagnosis.
func (s *study) saveConsole(vm *traditional.VM) string {
	p := filepath.Join(s.cfg.CacheDir, "traditional-console.log")
	os.WriteFile(p, []byte(vm.Console()), 0o644)
	return p
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func rssMiB(pid int) (float64, error) {
	kb, err := measure.RSSKiB(pid)
	if err != nil {
		return 0, fmt.Errorf("reading QEMU's resident memory: %w", err)
	}
	return float64(kb) / 1024, nil
}

func (s *study) measure(ctx context.Context) error {
	h, t := &s.res.Hull, &s.res.Traditional
	var hb, tb, hr, tr, hh, th []float64
	// Alternate sides so changes in machine load hit both.
	for i := 0; i < s.cfg.Runs; i++ {
		s.logf("boot %d/%d: redis (hull, then traditional)", i+1, s.cfg.Runs)
		p, _, d, err := s.bootHull(ctx, "redis", redisPort, waitPing)
		if err != nil {
			return err
		}
		rss, err := hullQEMURSS(p)
		p.Stop(20 * time.Second)
		if err != nil {
			return err
		}
		hr = append(hr, rss)
		hb = append(hb, ms(d))
		vm, _, d, err := s.bootTrad(ctx, "redis", redisPort, waitPing)
		if err != nil {
			return err
		}
		rss, err = rssMiB(vm.PID())
		vm.Stop()
		if err != nil {
			return err
		}
		tr = append(tr, rss)
		tb = append(tb, ms(d))
	}
	for i := 0; i < s.cfg.Runs; i++ {
		s.logf("boot %d/%d: Go HTTP server (hull, then traditional)", i+1, s.cfg.Runs)
		p, _, d, err := s.bootHull(ctx, "hello-server", httpPort, waitHTTP)
		if err != nil {
			return err
		}
		p.Stop(20 * time.Second)
		hh = append(hh, ms(d))
		vm, _, d, err := s.bootTrad(ctx, "http", httpPort, waitHTTP)
		if err != nil {
			return err
		}
		vm.Stop()
		th = append(th, ms(d))
	}
	h.BootRedisMS, t.BootRedisMS = measure.Summarise(hb), measure.Summarise(tb)
	h.QEMURSSMiB, t.QEMURSSMiB = measure.Summarise(hr), measure.Summarise(tr)
	h.BootHTTPMS, t.BootHTTPMS = measure.Summarise(hh), measure.Summarise(th)

	if err := s.throughput(ctx); err != nil {
		return err
	}
	if err := s.guestInfo(ctx); err != nil {
		return err
	}
	return s.redTeam(ctx)
}

// hullQEMURSS is the resident memory of the QEMU process under a
// running `hull run` (its child).
func hullQEMURSS(p *hullcli.Proc) (float64, error) {
	qpid, err := measure.ChildNamed(p.PID(), "qemu")
	if err != nil {
		return 0, fmt.Errorf("finding hull's QEMU: %w", err)
	}
	return rssMiB(qpid)
}

// checkSameVM boots hull once with --verbose (the guestinfo probe,
// which exits at once) and compares the QEMU command line it prints with
// the traditional VM's: the NIC must be the same, and so must the
// machine and kernel command line but for what differs by design. It
// runs before any measurement, so a drifted setup fails in seconds.
func (s *study) checkSameVM(ctx context.Context) error {
	s.logf("checking that both VMs get the same machine, kernel command line and network (hull run --verbose)")
	cctx, cancel := context.WithTimeout(ctx, bootTimeout)
	defer cancel()
	_, stderr, err := s.hull.Run(cctx, append([]string{"run", "guestinfo", "--verbose"}, s.runFlags("guestinfo")...)...)
	if err != nil {
		return err
	}
	hullArgv := hullcli.QEMUArgv(stderr)
	hullNIC := traditional.NIC(hullArgv)
	if hullNIC == "" {
		return fmt.Errorf("hull run --verbose printed no QEMU command line with a NIC: %s", tail(stderr, 5))
	}
	tradArgs := traditional.Args(s.vmConfig("guestinfo", 0, 0))
	if tradNIC := traditional.NIC(tradArgs); hullNIC != tradNIC {
		return fmt.Errorf("the two VMs would get different networks:\n  hull:        %s\n  traditional: %s", hullNIC, tradNIC)
	}
	if d := traditional.Differences(hullArgv, tradArgs); len(d) > 0 {
		return fmt.Errorf("the traditional VM no longer boots like hull's (mirror hull's runner in compare/internal/traditional): %s", strings.Join(d, "; "))
	}
	s.res.Setup.Network = hullNIC
	return nil
}

// throughput runs redis-benchmark against a fresh boot of each side,
// cfg.Runs times, alternating sides. Redis's own memory report is taken
// on each side's first boot, before its first benchmark.
func (s *study) throughput(ctx context.Context) error {
	h, t := map[string][]float64{}, map[string][]float64{}
	for i := 0; i < s.cfg.Runs; i++ {
		s.logf("throughput %d/%d: redis-benchmark -n %d (hull, then traditional)", i+1, s.cfg.Runs, s.cfg.Requests)
		p, port, _, err := s.bootHull(ctx, "redis", redisPort, waitPing)
		if err != nil {
			return err
		}
		err = s.redisNumbers(ctx, port, &s.res.Hull, h, i == 0)
		p.Stop(20 * time.Second)
		if err != nil {
			_, stderr := p.Output()
			return fmt.Errorf("hull: %w; hull said: %s", err, tail(stderr, 5))
		}
		vm, port, _, err := s.bootTrad(ctx, "redis", redisPort, waitPing)
		if err != nil {
			return err
		}
		err = s.redisNumbers(ctx, port, &s.res.Traditional, t, i == 0)
		vm.Stop()
		if err != nil {
			return fmt.Errorf("traditional: %w; console: %s", err, tail(vm.Console(), 5))
		}
	}
	s.res.Hull.Throughput, s.res.Traditional.Throughput = map[string]measure.Stats{}, map[string]measure.Stats{}
	for test, v := range h {
		s.res.Hull.Throughput[test] = measure.Summarise(v)
	}
	for test, v := range t {
		s.res.Traditional.Throughput[test] = measure.Summarise(v)
	}
	return nil
}

// redisNumbers benchmarks the Redis at port, appending requests/s by
// test to into; with info it first reads Redis's INFO memory into side.
func (s *study) redisNumbers(ctx context.Context, port int, side *report.Side, into map[string][]float64, info bool) error {
	if info {
		out, err := exec.CommandContext(ctx, "redis-cli", "-h", "127.0.0.1", "-p", strconv.Itoa(port), "INFO", "memory").Output()
		if err != nil {
			return fmt.Errorf("redis-cli INFO memory: %w", err)
		}
		mem := measure.RedisInfo(string(out))
		if side.RedisRSS, err = strconv.ParseInt(mem["used_memory_rss"], 10, 64); err != nil {
			return fmt.Errorf("redis INFO memory used_memory_rss: %w", err)
		}
		if side.RedisUsed, err = strconv.ParseInt(mem["used_memory"], 10, 64); err != nil {
			return fmt.Errorf("redis INFO memory used_memory: %w", err)
		}
	}
	bctx, cancel := context.WithTimeout(ctx, benchTimeout)
	defer cancel()
	cmd := exec.CommandContext(bctx, "redis-benchmark", "-h", "127.0.0.1", "-p", strconv.Itoa(port),
		"-t", "set,get", "-n", strconv.Itoa(s.cfg.Requests), "-q")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("redis-benchmark: %w: %s %s", err, tail(stderr.String(), 3), lastProgress(string(out)))
	}
	res, err := measure.Benchmark(string(out))
	if err != nil {
		return err
	}
	for _, test := range []string{"SET", "GET"} {
		v, ok := res[test]
		if !ok {
			return fmt.Errorf("redis-benchmark reported no %s result: %s", test, lastProgress(string(out)))
		}
		into[test] = append(into[test], v)
	}
	return nil
}

// guestInfo runs the guestinfo probe as the app on each side: the
// guest's memory right after boot and the device nodes the app sees.
func (s *study) guestInfo(ctx context.Context) error {
	s.logf("guest memory and devices: guestinfo probe as the app (hull, then traditional)")
	hctx, cancel := context.WithTimeout(ctx, bootTimeout)
	defer cancel()
	out, stderr, err := s.hull.Run(hctx, append([]string{"run", "guestinfo"}, s.runFlags("guestinfo")...)...)
	if err != nil {
		return err
	}
	info, err := measure.ParseGuestInfo(out)
	if err != nil {
		return fmt.Errorf("hull: %w (stderr: %s)", err, tail(stderr, 3))
	}
	s.res.Hull.Guest, s.res.Hull.RuntimeDevices = info.Memory, info.Devices

	tctx, cancel := context.WithTimeout(ctx, bootTimeout)
	defer cancel()
	vm, err := traditional.Boot(tctx, s.vmConfig("guestinfo", 0, 0))
	if err != nil {
		return err
	}
	defer vm.Stop()
	if err := vm.WaitConsole(tctx, traditional.GuestInfoEnd); err != nil && !errors.Is(err, traditional.ErrVMExited) {
		return err
	}
	if info, err = measure.ParseGuestInfo(vm.Console()); err != nil {
		return fmt.Errorf("traditional: %w; console: %s", err, tail(vm.Console(), 8))
	}
	s.res.Traditional.Guest, s.res.Traditional.RuntimeDevices = info.Memory, info.Devices
	return nil
}

// redTeam runs the red-team program as the app: in hull, and in the
// traditional VM as the service user and then as root.
func (s *study) redTeam(ctx context.Context) error {
	s.logf("red team: hull")
	rctx, cancel := context.WithTimeout(ctx, redTeamTimeout)
	defer cancel()
	// hull run exits with the app's status; the program exits 0 after
	// its last attempt, but its output is what counts either way.
	out, stderr, runErr := s.hull.Run(rctx, append([]string{"run", "redteam"}, s.runFlags("redteam")...)...)
	hullAttempts := redteam.Parse(out)
	if !redteam.Finished(hullAttempts) {
		return fmt.Errorf("the red team in hull did not finish (%v), so it cannot be the reference list; its last lines: %s; stderr: %s",
			runErr, tail(out, 3), tail(stderr, 5))
	}
	s.logf("red team: traditional (as redis, then as root)")
	vm, err := traditional.Boot(ctx, s.vmConfig("redteam", 0, 0))
	if err != nil {
		return err
	}
	defer vm.Stop()
	werr := vm.WaitConsole(rctx, traditional.RedTeamEndRoot)
	if werr != nil && !errors.Is(werr, traditional.ErrVMExited) {
		return fmt.Errorf("red team in the traditional VM: %w; console: %s", werr, tail(vm.Console(), 8))
	}
	// Give a VM that printed its last marker a moment to power off.
	wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
	vm.Wait(wctx)
	wcancel()
	console := vm.Console()
	asRedis, asRoot, ok := traditional.SplitRedTeam(console)
	if !ok {
		return fmt.Errorf("red team in the traditional VM: the run as redis did not finish; console: %s", tail(console, 12))
	}
	redisAttempts, rootAttempts := redteam.Parse(asRedis), redteam.Parse(asRoot)

	// The reference is hull's run, which got to the end: every attempt
	// the program makes, in order. Count lists anything else a
	// traditional run reported as Extra, uncounted.
	ref := redteam.Names(hullAttempts)
	rootDown := !strings.Contains(console, traditional.RedTeamEndRoot)
	s.res.Hull.RedTeam = []report.RedTeamRun{{As: "app", Tally: redteam.Count(ref, hullAttempts, false)}}
	s.res.Traditional.RedTeam = []report.RedTeamRun{
		{As: "redis", Tally: redteam.Count(ref, redisAttempts, false)},
		{As: "root", Tally: redteam.Count(ref, rootAttempts, rootDown)},
	}
	return nil
}

func dpkgVersion(ctx context.Context, pkg string) string {
	out, err := exec.CommandContext(ctx, "dpkg-query", "-W", "-f", "${Version}", pkg).Output()
	if err != nil {
		return "(unknown version)"
	}
	return strings.TrimSpace(string(out))
}

// lastProgress is the last line of redis-benchmark's progress output,
// whose lines end in carriage returns.
func lastProgress(out string) string {
	lines := strings.FieldsFunc(out, func(r rune) bool { return r == '\r' || r == '\n' })
	for i := len(lines) - 1; i >= 0; i-- {
		if l := strings.TrimSpace(lines[i]); l != "" {
			return l
		}
	}
	return ""
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

func loadAvg() [3]float64 {
	var l [3]float64
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return l
	}
	f := strings.Fields(string(b))
	for i := 0; i < 3 && i < len(f); i++ {
		l[i], _ = strconv.ParseFloat(f[i], 64)
	}
	return l
}
