package report

import (
	"bytes"
	"flag"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hullvm/hull/compare/internal/measure"
	"github.com/hullvm/hull/compare/internal/redteam"
	"github.com/hullvm/hull/internal/surface"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// put writes a file of content and mode at rel under root.
func put(t *testing.T, root, rel, content string, mode fs.FileMode) {
	t.Helper()
	p := filepath.Join(root, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
}

// The counting the comparison prints, from a directory tree to the
// table's cells: the same path the traditional root takes (ScanDir,
// Without the payload directory, Classify, SurfaceFrom, SurfaceRows).
func TestSurfaceOfTree(t *testing.T) {
	root := t.TempDir()
	// A real ELF program: this test binary.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	elfBytes, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	put(t, root, "usr/bin/dash", string(elfBytes), 0o755)
	if err := os.Symlink("dash", filepath.Join(root, "usr/bin/sh")); err != nil {
		t.Fatal(err)
	}
	put(t, root, "usr/bin/su", "setuid helper", 0o755|fs.ModeSetuid)
	put(t, root, "usr/bin/chage", "setgid helper", 0o755|fs.ModeSetgid)
	put(t, root, "usr/bin/perl5.36.0", "interpreter", 0o755)
	put(t, root, "usr/bin/apt-get", "package manager", 0o755)
	put(t, root, "usr/bin/gcc-12", "compiler", 0o755)
	if err := os.Symlink("/usr/bin/wget2", filepath.Join(root, "usr/bin/wget")); err != nil {
		t.Fatal(err)
	}
	put(t, root, "etc/passwd", "root:x:0:0::/root:/bin/bash\n", 0o644)
	put(t, root, "usr/share/doc/python3", "not executable: not an interpreter", 0o644)
	// The comparison's own programs are not part of the server.
	put(t, root, "opt/compare/redteam", string(elfBytes), 0o755)
	put(t, root, "opt/compare/sh", "payload", 0o755)

	files, err := surface.ScanDir(root)
	if err != nil {
		t.Fatal(err)
	}
	// Device nodes need privileges to make; the scanner sees them as
	// modes, so one is added as the scan would report it.
	files = append(files, surface.File{Path: "/dev/null", Mode: fs.ModeDevice | fs.ModeCharDevice | 0o666})
	got := SurfaceFrom(surface.Classify(Without(files, "/opt/compare")))

	const textBytes = len("setuid helper") + len("setgid helper") + len("interpreter") + len("package manager") +
		len("compiler") + len("root:x:0:0::/root:/bin/bash\n") + len("not executable: not an interpreter")
	want := Surface{
		Files:           8,
		Bytes:           int64(len(elfBytes) + textBytes),
		Programs:        []string{"/usr/bin/dash"},
		Setuid:          []string{"/usr/bin/chage", "/usr/bin/su"},
		Shells:          []string{"/usr/bin/dash", "/usr/bin/sh"},
		Interpreters:    []string{"/usr/bin/perl5.36.0"},
		PackageManagers: []string{"/usr/bin/apt-get"},
		Tools:           []string{"/usr/bin/gcc-12", "/usr/bin/wget"},
		Devices:         []string{"/dev/null"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("surface =\n%+v\nwant\n%+v", got, want)
	}

	empty := SurfaceFrom(surface.Report{})
	rows := SurfaceRows(got, empty)
	wantRows := map[string][2]string{
		"ELF programs":          {"1: dash", "0"},
		"setuid/setgid files":   {"2: chage, su", "0"},
		"shells":                {"2: dash, sh", "0"},
		"interpreters":          {"1: perl5.36.0", "0"},
		"package managers":      {"1: apt-get", "0"},
		"compilers/downloaders": {"2: gcc-12, wget", "0"},
		"device nodes":          {"1: null", "0"},
		"shared libraries":      {"0", "0"},
	}
	for _, r := range rows {
		w, ok := wantRows[r.Label]
		if !ok {
			continue
		}
		if !reflect.DeepEqual(r.Values, w[:]) {
			t.Errorf("row %q = %q, want %q", r.Label, r.Values, w)
		}
		delete(wantRows, r.Label)
	}
	for label := range wantRows {
		t.Errorf("no row %q", label)
	}
	// JSON shows [] for none, not null.
	if empty.Shells == nil || empty.Tools == nil {
		t.Errorf("SurfaceFrom(empty) has nil lists: %+v", empty)
	}
}

func TestCountedShortensLongLists(t *testing.T) {
	paths := []string{"/a/1", "/b/1", "/a/2", "/a/3", "/a/4", "/a/5", "/a/6", "/a/7"}
	if got, want := counted(paths, true), "8: 1, 2, 3, 4, 5, 6, …"; got != want {
		t.Errorf("counted = %q, want %q", got, want)
	}
	if got := counted(paths, false); got != "8" {
		t.Errorf("counted without names = %q, want 8", got)
	}
}

// sample is a Result as a run fills it; the numbers are arbitrary test
// inputs, not measurements.
func sample() *Result {
	ref := []string{"exec_bin_sh", "fork", "setuid_root", "reboot", "exec_direct"}
	at := func(name string, ok bool) redteam.Attempt { return redteam.Attempt{Name: name, OK: ok} }
	hullRun := []redteam.Attempt{at("exec_bin_sh", false), at("fork", false), at("setuid_root", false), at("reboot", false), at("exec_direct", false)}
	asUser := []redteam.Attempt{at("exec_bin_sh", true), at("fork", true), at("setuid_root", false), at("reboot", false), at("exec_direct", true)}
	asRoot := []redteam.Attempt{at("exec_bin_sh", true), at("fork", true), at("setuid_root", true)}
	r := &Result{
		Started:    time.Date(2025, 1, 2, 3, 4, 0, 0, time.UTC),
		ElapsedSec: 321,
		Host:       Host{CPU: "Test CPU", Cores: 2, Accel: "tcg (test)", LoadStart: [3]float64{1, 0.5, 0.25}, LoadEnd: [3]float64{2, 1, 0.5}},
		Setup: Setup{Kernel: "debian-test", KernelDigest: "0123456789abcdef", KernelIsDefault: true, MemoryMiB: 256, CPUs: 1, Runs: 3, Requests: 1000,
			Network:   "-netdev stream,id=n0,server=off,addr.type=unix,addr.path=SOCKET -device virtio-net-device,netdev=n0,mac=52:54:00:12:34:56,host_mtu=65520",
			RedisHull: "redis-server 7 from the host", RedisTraditional: "redis-server 7 from Debian's archive", TraditionalBoot: "test boot"},
		Hull: Side{
			Surface:        Surface{Files: 20, Bytes: 4 << 20, Programs: []string{"/usr/bin/redis-server"}, SharedLibraries: 9, Setuid: []string{}, Shells: []string{}, Interpreters: []string{}, PackageManagers: []string{}, Tools: []string{}, Devices: []string{}},
			RuntimeDevices: []string{"/dev/null", "/dev/zero"},
			Outside:        []OutsideFile{{Path: "/init", Size: 1 << 20}, {Path: "/lib/modules/virtio_blk.ko", Size: 1 << 10}},
			OutsideBytes:   1<<20 + 1<<10,
			BootRedisMS:    measure.Summarise([]float64{3000, 2900, 3100}),
			QEMURSSMiB:     measure.Summarise([]float64{100, 101, 102}),
			Guest:          measure.GuestMemory{TotalKiB: 200000, AvailableKiB: 180000, UsedKiB: 20000},
			Throughput:     map[string]measure.Stats{"SET": measure.Summarise([]float64{10000, 9000, 11000}), "GET": measure.Summarise([]float64{12000})},
			RedTeam:        []RedTeamRun{{As: "app", Tally: redteam.Count(ref, hullRun, false)}},
		},
		Traditional: Side{
			Surface:        Surface{Files: 5000, Bytes: 150 << 20, Programs: []string{"/usr/bin/dash", "/usr/bin/bash", "/usr/bin/su", "/usr/bin/perl"}, SharedLibraries: 300, Setuid: []string{"/usr/bin/su"}, Shells: []string{"/usr/bin/bash", "/usr/bin/dash", "/usr/bin/sh"}, Interpreters: []string{"/usr/bin/perl"}, PackageManagers: []string{"/usr/bin/apt", "/usr/bin/dpkg"}, Tools: []string{}, Devices: []string{"/dev/null"}},
			RuntimeDevices: []string{"/dev/null", "/dev/vda", "/dev/mem"},
			Outside:        []OutsideFile{{Path: "/init", Size: 1 << 10}},
			OutsideBytes:   1 << 10,
			BootRedisMS:    measure.Summarise([]float64{6000, 6100, 5900}),
			QEMURSSMiB:     measure.Summarise([]float64{150, 151, 149}),
			Guest:          measure.GuestMemory{TotalKiB: 200000, AvailableKiB: 160000, UsedKiB: 40000},
			Throughput:     map[string]measure.Stats{"SET": measure.Summarise([]float64{8000, 7000, 8100}), "GET": measure.Summarise([]float64{9000})},
			RedTeam: []RedTeamRun{
				{As: "redis", Tally: redteam.Count(ref, asUser, false)},
				{As: "root", Tally: redteam.Count(ref, asRoot, true)},
			},
		},
	}
	r.ComputeRatios()
	r.Summary = r.SummaryLine()
	return r
}

func TestRatiosAndSummary(t *testing.T) {
	r := sample()
	want := Ratios{Files: 0.004, BootMedian: 0.5, QEMURSS: 101.0 / 150, GuestUsed: 0.5, SET: 1.25, GET: 12000.0 / 9000}
	if r.Ratios != want {
		t.Errorf("Ratios = %+v, want %+v", r.Ratios, want)
	}
	wantSummary := "hull: 20 files, 0 shells, 0/5 attacks succeeded, 3000 ms boot, 10000 SET / 12000 GET ops/s; " +
		"traditional: 5000 files, 3 shells, 3/5 as redis, 4/5 as root attacks succeeded, 6000 ms boot, 8000 SET / 9000 GET ops/s"
	if r.Summary != wantSummary {
		t.Errorf("SummaryLine =\n%s\nwant\n%s", r.Summary, wantSummary)
	}
	if got := ratio(1, 0); got != 0 {
		t.Errorf("ratio(1, 0) = %v, want 0 (nothing measured)", got)
	}
}

// The whole table, against a golden file (go test -update rewrites it).
func TestWriteTable(t *testing.T) {
	var b bytes.Buffer
	if err := sample().WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "table.golden")
	if *update {
		if err := os.WriteFile(golden, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -update once)", err)
	}
	if !bytes.Equal(b.Bytes(), want) {
		t.Errorf("table differs from %s:\n%s", golden, b.String())
	}
	// The summary is the last line.
	lines := strings.Split(strings.TrimRight(b.String(), "\n"), "\n")
	if last := lines[len(lines)-1]; last != sample().Summary {
		t.Errorf("last line = %q, want the summary", last)
	}
}

func TestWriteChart(t *testing.T) {
	r := sample()
	tests := []struct {
		format string
		magic  string
	}{
		{SVG, "<?xml"},
		{PNG, "\x89PNG\r\n\x1a\n"},
	}
	for _, tt := range tests {
		t.Run(tt.format, func(t *testing.T) {
			var b bytes.Buffer
			if err := r.WriteChart(&b, tt.format); err != nil {
				t.Fatalf("WriteChart: %v", err)
			}
			if !bytes.HasPrefix(b.Bytes(), []byte(tt.magic)) {
				t.Errorf("%s chart starts %q, want %q", tt.format, b.Bytes()[:min(16, b.Len())], tt.magic)
			}
			if tt.format == SVG {
				for _, label := range []string{"shells", "package managers", "traditional, as root (of 5)", "hull, as app (of 5)"} {
					if !strings.Contains(b.String(), label) {
						t.Errorf("SVG chart lacks the label %q", label)
					}
				}
			}
		})
	}
	if err := r.WriteChart(io.Discard, "gif"); err == nil {
		t.Errorf("WriteChart(gif) did not fail")
	}
}
