// Package report holds the result of one `make compare` run and renders
// it: a text table, the closing summary line, JSON, and a chart of the
// surface and attack counts.
//
// Everything it prints comes from a Result; it measures nothing and types
// in no number. Rendering writes to the io.Writer it is given (the
// command decides where: stdout, a file).
package report

import (
	"fmt"
	"io"
	"path"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/hullvm/hull/compare/internal/measure"
	"github.com/hullvm/hull/compare/internal/redteam"
	"github.com/hullvm/hull/internal/surface"
)

// Result is everything one run measured.
type Result struct {
	Started     time.Time `json:"started"`
	ElapsedSec  float64   `json:"elapsed_sec"`
	Host        Host      `json:"host"`
	Setup       Setup     `json:"setup"`
	Hull        Side      `json:"hull"`
	Traditional Side      `json:"traditional"`
	// Ratios are hull ÷ traditional.
	Ratios  Ratios `json:"ratios"`
	Summary string `json:"summary"`
}

// Host is the machine the run was on.
type Host struct {
	CPU   string `json:"cpu"`
	Cores int    `json:"cores"`
	// Accel is "kvm" or "tcg", with QEMU's reason.
	Accel string `json:"accel"`
	// Load averages (1, 5, 15 min) at the start and the end: how busy
	// the machine was besides the run.
	LoadStart [3]float64 `json:"load_start"`
	LoadEnd   [3]float64 `json:"load_end"`
}

// Setup is what both VMs had in common, and how each was built.
type Setup struct {
	Kernel       string `json:"kernel"`        // bundle name
	KernelDigest string `json:"kernel_digest"` // the bundle both boot
	KernelSHA256 string `json:"kernel_sha256"` // of the kernel image itself
	// KernelIsDefault says the bundle is the store's default, the one
	// hull run boots unless told otherwise.
	KernelIsDefault bool `json:"kernel_is_default"`
	MemoryMiB       int  `json:"memory_mib"`
	CPUs            int  `json:"cpus"`
	Runs            int  `json:"runs"`
	Requests        int  `json:"requests"` // redis-benchmark -n
	// Network is the -netdev both VMs had, as passed to QEMU, with the
	// host port of the forward shown as HOSTPORT.
	Network string `json:"network"`
	// Redis package versions on the host (hull's image copies the
	// host's redis-server) and in the traditional root.
	RedisHull        string `json:"redis_hull"`
	RedisTraditional string `json:"redis_traditional"`
	// TraditionalBoot says how the traditional VM boots.
	TraditionalBoot string `json:"traditional_boot"`
}

// Side is one contender's numbers.
type Side struct {
	// Surface is the redis image's: for hull the app disk, for the
	// traditional VM its root filesystem.
	Surface Surface `json:"surface"`
	// SurfaceHTTP is hull's Go HTTP server image (nil for the traditional
	// VM, whose root is the same for every app).
	SurfaceHTTP *Surface `json:"surface_http,omitempty"`
	// Outside is what the VM holds outside the app's filesystem: hull's
	// init, manifest and kernel modules; the traditional VM's stage-1
	// initramfs (the same modules plus a shell and tools to mount root).
	Outside      []OutsideFile `json:"outside"`
	OutsideBytes int64         `json:"outside_bytes"`

	BootRedisMS measure.Stats `json:"boot_redis_ms"`
	BootHTTPMS  measure.Stats `json:"boot_http_ms"`
	// QEMURSSMiB is the QEMU process's resident memory right after the
	// first PING answer of each redis boot.
	QEMURSSMiB measure.Stats `json:"qemu_rss_mib"`
	// RedisRSS and RedisUsed are Redis's own INFO memory numbers
	// (used_memory_rss, used_memory) after the first boot, before the
	// first benchmark.
	RedisRSS  int64 `json:"redis_used_memory_rss"`
	RedisUsed int64 `json:"redis_used_memory"`
	// Guest is the guest's /proc/meminfo with the guestinfo probe as
	// the only app, right after boot.
	Guest measure.GuestMemory `json:"guest_memory"`
	// RuntimeDevices are the device nodes the probe, as the app, found
	// under /dev at run time (the image's own are in Surface).
	RuntimeDevices []string `json:"runtime_devices"`
	// Throughput is redis-benchmark's requests per second by test
	// (SET, GET), one value per boot.
	Throughput map[string]measure.Stats `json:"throughput"`
	RedTeam    []RedTeamRun             `json:"red_team"`
}

// OutsideFile is one file outside the app's view.
type OutsideFile struct {
	Path string `json:"path"`
	Size int64  `json:"size"`
	Why  string `json:"why,omitempty"`
}

// RedTeamRun is the red-team program's tally as one user.
type RedTeamRun struct {
	As string `json:"as"` // the user it ran as
	redteam.Tally
}

// Ratios are hull ÷ traditional.
type Ratios struct {
	Files          float64 `json:"files"`
	BootMedian     float64 `json:"boot_median"`
	BootHTTPMedian float64 `json:"boot_http_median,omitempty"`
	QEMURSS        float64 `json:"qemu_rss"`
	GuestUsed      float64 `json:"guest_used"`
	SET            float64 `json:"set"`
	GET            float64 `json:"get"`
}

// Surface is the attack-surface row of one image.
type Surface struct {
	Files           int      `json:"files"`
	Bytes           int64    `json:"bytes"`
	Programs        []string `json:"programs"` // ELF executables
	SharedLibraries int      `json:"shared_libraries"`
	Setuid          []string `json:"setuid_setgid"`
	Shells          []string `json:"shells"`
	Interpreters    []string `json:"interpreters"`
	PackageManagers []string `json:"package_managers"`
	// Tools are compilers and downloaders together.
	Tools   []string `json:"compilers_downloaders"`
	Devices []string `json:"devices"`
}

// SurfaceFrom turns a classifier report into a row. Lists are sorted and
// never nil, so JSON shows [] for "none".
func SurfaceFrom(r surface.Report) Surface {
	list := func(ls ...[]string) []string {
		out := []string{}
		for _, l := range ls {
			out = append(out, l...)
		}
		slices.Sort(out)
		return out
	}
	return Surface{
		Files: r.Files, Bytes: r.Bytes,
		Programs: list(r.Programs), SharedLibraries: r.SharedLibraries,
		Setuid: list(r.Setuid), Shells: list(r.Shells), Interpreters: list(r.Interpreters),
		PackageManagers: list(r.PackageManagers), Tools: list(r.Compilers, r.Downloaders),
		Devices: list(r.Devices),
	}
}

// Without drops the files under prefix from a scan (the traditional VM's
// payload directory, if any) before classification.
func Without(files []surface.File, prefix string) []surface.File {
	out := files[:0:0]
	for _, f := range files {
		if f.Path == prefix || strings.HasPrefix(f.Path, prefix+"/") {
			continue
		}
		out = append(out, f)
	}
	return out
}

// Row is one line of the surface table.
type Row struct {
	Label  string
	Values []string
}

// maxNames is how many names a table cell lists before "…".
const maxNames = 6

// SurfaceRows renders surfaces side by side: counts, with the names
// (base names) of the few things an attacker looks for.
func SurfaceRows(cols ...Surface) []Row {
	rows := []Row{
		{Label: "files (bytes)"}, {Label: "ELF programs"}, {Label: "shared libraries"},
		{Label: "setuid/setgid files"}, {Label: "shells"}, {Label: "interpreters"},
		{Label: "package managers"}, {Label: "compilers/downloaders"}, {Label: "device nodes"},
	}
	for _, s := range cols {
		cells := []string{
			fmt.Sprintf("%d (%s)", s.Files, MiB(s.Bytes)),
			counted(s.Programs, len(s.Programs) <= 3),
			fmt.Sprint(s.SharedLibraries),
			counted(s.Setuid, true), counted(s.Shells, true), counted(s.Interpreters, true),
			counted(s.PackageManagers, true), counted(s.Tools, true), counted(s.Devices, true),
		}
		for i := range rows {
			rows[i].Values = append(rows[i].Values, cells[i])
		}
	}
	return rows
}

// counted is "N" or "N: a, b, c" with base names, deduplicated.
func counted(paths []string, names bool) string {
	if len(paths) == 0 || !names {
		return fmt.Sprint(len(paths))
	}
	var base []string
	for _, p := range paths {
		base = append(base, path.Base(p))
	}
	slices.Sort(base)
	base = slices.Compact(base)
	more := ""
	if len(base) > maxNames {
		base, more = base[:maxNames], ", …"
	}
	return fmt.Sprintf("%d: %s%s", len(paths), strings.Join(base, ", "), more)
}

// MiB formats bytes as MiB with two decimals.
func MiB(n int64) string { return fmt.Sprintf("%.2f MiB", float64(n)/(1<<20)) }

// Succeeded returns a run's "X/Y" for the summary.
func (r RedTeamRun) Succeeded() string {
	return fmt.Sprintf("%d/%d", len(r.Tally.Succeeded), r.Tally.Attempts)
}

// ratio is a ÷ b, 0 when b is 0.
func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// ComputeRatios fills r.Ratios from the two sides.
func (r *Result) ComputeRatios() {
	h, t := r.Hull, r.Traditional
	r.Ratios = Ratios{
		Files:          ratio(float64(h.Surface.Files), float64(t.Surface.Files)),
		BootMedian:     ratio(h.BootRedisMS.Median, t.BootRedisMS.Median),
		BootHTTPMedian: ratio(h.BootHTTPMS.Median, t.BootHTTPMS.Median),
		QEMURSS:        ratio(h.QEMURSSMiB.Median, t.QEMURSSMiB.Median),
		GuestUsed:      ratio(float64(h.Guest.UsedKiB), float64(t.Guest.UsedKiB)),
		SET:            ratio(h.Throughput["SET"].Median, t.Throughput["SET"].Median),
		GET:            ratio(h.Throughput["GET"].Median, t.Throughput["GET"].Median),
	}
}

// SummaryLine is the closing one-line verdict.
func (r *Result) SummaryLine() string {
	side := func(name string, s Side) string {
		attacks := "no red-team run"
		switch len(s.RedTeam) {
		case 0:
		case 1:
			attacks = s.RedTeam[0].Succeeded() + " attacks succeeded"
		default:
			var parts []string
			for _, run := range s.RedTeam {
				parts = append(parts, run.Succeeded()+" as "+run.As)
			}
			attacks = strings.Join(parts, ", ") + " attacks succeeded"
		}
		return fmt.Sprintf("%s: %d files, %d shells, %s, %.0f ms boot, %.0f SET / %.0f GET ops/s",
			name, s.Surface.Files, len(s.Surface.Shells), attacks, s.BootRedisMS.Median, s.Throughput["SET"].Median, s.Throughput["GET"].Median)
	}
	return side("hull", r.Hull) + "; " + side("traditional", r.Traditional)
}

// WriteTable prints the whole comparison as text.
func (r *Result) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	p := func(format string, a ...any) { fmt.Fprintf(tw, format, a...) }
	h, t := r.Hull, r.Traditional
	p("hull vs a traditional server VM — %s — %s, %d cores, %s\n", r.Started.Format("2006-01-02 15:04"), r.Host.CPU, r.Host.Cores, r.Host.Accel)
	p("load average at start %.2f %.2f %.2f, at end %.2f %.2f %.2f (other work on the machine)\n",
		r.Host.LoadStart[0], r.Host.LoadStart[1], r.Host.LoadStart[2], r.Host.LoadEnd[0], r.Host.LoadEnd[1], r.Host.LoadEnd[2])
	which := "not the store's default"
	if r.Setup.KernelIsDefault {
		which = "the store's default"
	}
	p("both VMs: kernel bundle %s (%s, %s), %d MiB, %d vCPU, the same QEMU microvm machine and kernel command line (checked against hull run --verbose)\n",
		r.Setup.Kernel, short(r.Setup.KernelDigest), which, r.Setup.MemoryMiB, r.Setup.CPUs)
	p("both VMs' network: hull's gateway (gVisor netstack in a host process, no egress rules), forward from 127.0.0.1: %s\n", r.Setup.Network)
	p("redis-server: hull copies the host's (%s); traditional has Debian's in its root (%s)\n", r.Setup.RedisHull, r.Setup.RedisTraditional)
	p("traditional VM: %s\n", r.Setup.TraditionalBoot)

	p("\n1. attack surface (what an attacker who runs code as the app can see)\n")
	cols := []Surface{h.Surface}
	head := "\thull: redis"
	if h.SurfaceHTTP != nil {
		cols = append(cols, *h.SurfaceHTTP)
		head += "\thull: Go HTTP server"
	}
	cols = append(cols, t.Surface)
	head += "\ttraditional: redis\n"
	p("%s", head)
	for _, row := range SurfaceRows(cols...) {
		p("%s\t%s\n", row.Label, strings.Join(row.Values, "\t"))
	}
	p("device nodes in /dev at run time (probe as the app)\t%s", counted(h.RuntimeDevices, true))
	if h.SurfaceHTTP != nil {
		p("\t")
	}
	p("\t%s\n", counted(t.RuntimeDevices, true))
	p("outside the app's view\t%s", outsideCell(h))
	if h.SurfaceHTTP != nil {
		p("\t(same kind)")
	}
	p("\t%s\n", outsideCell(t))

	p("\n2. boot: launch → first answer, ms (min / median / max of %d)\thull\ttraditional\thull ÷ traditional\n", r.Setup.Runs)
	p("redis: first PING answered\t%s\t%s\t%.2f\n", stats(h.BootRedisMS, "%.0f"), stats(t.BootRedisMS, "%.0f"), r.Ratios.BootMedian)
	if len(h.BootHTTPMS.Values) > 0 || len(t.BootHTTPMS.Values) > 0 {
		p("Go HTTP server: first 200\t%s\t%s\t%.2f\n", stats(h.BootHTTPMS, "%.0f"), stats(t.BootHTTPMS, "%.0f"), r.Ratios.BootHTTPMedian)
	}

	p("\n3. memory\thull\ttraditional\thull ÷ traditional\n")
	p("QEMU RSS after boot, MiB (min / median / max)\t%s\t%s\t%.2f\n", stats(h.QEMURSSMiB, "%.1f"), stats(t.QEMURSSMiB, "%.1f"), r.Ratios.QEMURSS)
	p("guest used (MemTotal − MemAvailable), guestinfo probe as the app\t%s of %s\t%s of %s\t%.2f\n",
		kib(h.Guest.UsedKiB), kib(h.Guest.TotalKiB), kib(t.Guest.UsedKiB), kib(t.Guest.TotalKiB), r.Ratios.GuestUsed)
	p("redis INFO used_memory_rss (the app's own)\t%s\t%s\t\n", MiB(h.RedisRSS), MiB(t.RedisRSS))

	p("\n4. throughput: redis-benchmark -t set,get -n %d -q through the forward, requests/s (min / median / max of %d)\thull\ttraditional\thull ÷ traditional\n", r.Setup.Requests, r.Setup.Runs)
	p("SET\t%s\t%s\t%.2f\n", stats(h.Throughput["SET"], "%.0f"), stats(t.Throughput["SET"], "%.0f"), r.Ratios.SET)
	p("GET\t%s\t%s\t%.2f\n", stats(h.Throughput["GET"], "%.0f"), stats(t.Throughput["GET"], "%.0f"), r.Ratios.GET)

	p("\n5. red team: test/e2e/testdata/redteam as the app\tsucceeded\trefused\tnot reached\tsucceeded attacks\n")
	for _, pair := range []struct {
		name string
		s    Side
	}{{"hull", h}, {"traditional", t}} {
		for _, run := range pair.s.RedTeam {
			names := strings.Join(run.Tally.Succeeded, ", ")
			if names == "" {
				names = "none"
			}
			p("%s, as %s\t%s\t%d\t%d\t%s\n", pair.name, run.As, run.Succeeded(), len(run.Refused), len(run.NotReached), names)
		}
	}
	for _, pair := range []struct {
		name string
		s    Side
	}{{"hull", h}, {"traditional", t}} {
		for _, run := range pair.s.RedTeam {
			if run.DownAt != "" {
				p("  %s as %s: the VM went down during %q; the %d attempts after it never ran (counted as not succeeded)\n", pair.name, run.As, run.DownAt, len(run.NotReached))
			}
			if len(run.Unreported) > 0 {
				p("  %s as %s: %d attempts were never reported (the program stopped early): %s\n", pair.name, run.As, len(run.Unreported), strings.Join(run.Unreported, ", "))
			}
		}
	}
	p("\n%s\n", r.Summary)
	return tw.Flush()
}

func outsideCell(s Side) string {
	if len(s.Outside) == 0 {
		return "-"
	}
	kinds := map[string]int{}
	for _, f := range s.Outside {
		switch {
		case strings.HasSuffix(f.Path, ".ko"):
			kinds["kernel module"]++
		default:
			kinds["other file"]++
		}
	}
	keys := make([]string, 0, len(kinds))
	for k := range kinds {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var parts []string
	for _, k := range keys {
		noun := k
		if kinds[k] != 1 {
			noun += "s"
		}
		parts = append(parts, fmt.Sprintf("%d %s", kinds[k], noun))
	}
	return fmt.Sprintf("%s, %s", strings.Join(parts, " + "), MiB(s.OutsideBytes))
}

func stats(s measure.Stats, f string) string {
	if len(s.Values) == 0 {
		return "-"
	}
	return fmt.Sprintf(f+" / "+f+" / "+f, s.Min, s.Median, s.Max)
}

func kib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/1024) }

func short(d string) string {
	if len(d) > 12 {
		return d[:12]
	}
	return d
}
