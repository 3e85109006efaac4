package traditional

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/hullvm/hull/internal/initramfs"
	"github.com/hullvm/hull/internal/kernel"
	"github.com/hullvm/hull/internal/vmm/qemu"
)

func testVM() VMConfig {
	return VMConfig{
		QEMU: "qemu-system-x86_64", Accel: qemu.AccelTCG, Kernel: "/k/vmlinuz", Initrd: "/t/stage1.cpio",
		Disk: "/t/root,1.img", App: "redis", TSCkHz: 2000000, MemoryMiB: 256, CPUs: 1,
		HostPort: 41234, GuestPort: 6379, SockDir: "/t",
	}
}

func TestCmdline(t *testing.T) {
	c := testVM()
	want := "console=ttyS0 panic=-1 reboot=t sysctl.vm.overcommit_memory=1 quiet loglevel=1 tsc_early_khz=2000000 root=/dev/vda rw compare.app=redis"
	if got := c.Cmdline(); got != want {
		t.Errorf("Cmdline =\n%s\nwant\n%s", got, want)
	}
	// A bundle's boot words come where hull's runner puts them; KVM
	// needs no TSC hint.
	c.Boot = kernel.Boot{Cmdline: []string{"mitigations=off"}}
	c.Accel = qemu.AccelKVM
	want = "console=ttyS0 panic=-1 reboot=t sysctl.vm.overcommit_memory=1 quiet loglevel=1 mitigations=off root=/dev/vda rw compare.app=redis"
	if got := c.Cmdline(); got != want {
		t.Errorf("Cmdline with boot hints =\n%s\nwant\n%s", got, want)
	}
}

func TestArgs(t *testing.T) {
	c := testVM()
	args := Args(c)
	joined := strings.Join(args, " ")
	for _, want := range []string{
		"-M microvm,x-option-roms=off,isa-serial=on,rtc=on -accel tcg",
		"-m 256M -smp 1",
		// Commas in the path are escaped; every boot starts from the same disk.
		"-drive file=/t/root,,1.img,if=none,id=root,format=raw,snapshot=on -device virtio-blk-device,drive=root",
	} {
		if !strings.Contains(joined, want) {
			t.Errorf("Args lacks %q:\n%s", want, joined)
		}
	}
	// The NIC joins the gateway at SockDir/net.sock, with hull's MTU.
	if !strings.Contains(joined, "-netdev stream,id=n0,server=off,addr.type=unix,addr.path=/t/net.sock") {
		t.Errorf("Args has no NIC on the gateway socket:\n%s", joined)
	}
	want := "-netdev stream,id=n0,server=off,addr.type=unix,addr.path=SOCKET -device virtio-net-device,netdev=n0,mac=52:54:00:12:34:56,host_mtu=65520"
	if got := NIC(args); got != want {
		t.Errorf("NIC =\n%s\nwant\n%s", got, want)
	}
	// Another instance's socket, commas escaped: the same NIC.
	other := Args(VMConfig{SockDir: "/run/other,dir", Accel: qemu.AccelTCG})
	if got := NIC(other); got != want {
		t.Errorf("NIC of another instance =\n%s\nwant\n%s", got, want)
	}
	if strings.Contains(joined, "acpi=off") {
		t.Errorf("ACPI is off without the bundle asking")
	}
	c.Boot.NoACPI = true
	if joined = strings.Join(Args(c), " "); !strings.Contains(joined, "rtc=on,acpi=off") {
		t.Errorf("NoACPI bundle: Args lacks acpi=off:\n%s", joined)
	}
	if NIC([]string{"-m", "1G", "-device", "virtio-rng-device"}) != "" {
		t.Errorf("NIC found a network device that is not there")
	}
}

func TestInitScriptMarkers(t *testing.T) {
	for _, m := range []string{GuestInfoEnd, RedTeamBeginRedis, RedTeamEndRedis, RedTeamBeginRoot, RedTeamEndRoot} {
		if !strings.Contains(initScript, `echo "`+m+`"`) {
			t.Errorf("the init script never prints %q", m)
		}
	}
	// The apps the study boots are all in the script.
	for _, app := range []string{"redis)", "http)", "guestinfo)", "redteam)"} {
		if !strings.Contains(initScript, "\n"+app+"\n") {
			t.Errorf("the init script has no case %s", app)
		}
	}
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh to syntax-check the scripts")
	}
	for name, script := range map[string]string{"init": initScript, "stage1": stage1Script} {
		cmd := exec.Command(sh, "-n")
		cmd.Stdin = strings.NewReader(script)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("%s script: sh -n: %v\n%s", name, err, out)
		}
	}
}

func TestSplitRedTeam(t *testing.T) {
	a1 := `{"attempt":"fork","ok":true}`
	a2 := `{"attempt":"setuid_root","ok":true}`
	tests := []struct {
		name                string
		console             string
		wantRedis, wantRoot string
		wantOK              bool
	}{
		{
			name: "both runs",
			console: "boot\r\n" + RedTeamBeginRedis + "\r\n" + a1 + "\r\n" + RedTeamEndRedis + "\r\n" +
				RedTeamBeginRoot + "\r\n" + a2 + "\r\n" + RedTeamEndRoot + "\r\n",
			wantRedis: "\r\n" + a1 + "\r\n", wantRoot: "\r\n" + a2 + "\r\n", wantOK: true,
		},
		{
			name:      "root run cut off by the VM going down",
			console:   RedTeamBeginRedis + "\n" + a1 + "\n" + RedTeamEndRedis + "\n" + RedTeamBeginRoot + "\n" + a2 + "\n[  9.1] reboot: Restarting",
			wantRedis: "\n" + a1 + "\n", wantRoot: "\n" + a2 + "\n[  9.1] reboot: Restarting", wantOK: true,
		},
		{
			name:    "service user's run did not end",
			console: RedTeamBeginRedis + "\n" + a1 + "\n",
		},
		{
			name:    "never began",
			console: "stage1: cannot mount /dev/vda\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			redis, root, ok := SplitRedTeam(tt.console)
			if redis != tt.wantRedis || root != tt.wantRoot || ok != tt.wantOK {
				t.Errorf("SplitRedTeam = %q, %q, %v; want %q, %q, %v", redis, root, ok, tt.wantRedis, tt.wantRoot, tt.wantOK)
			}
		})
	}
}

func writeBundle(t *testing.T, config string, modules ...string) *kernel.Bundle {
	t.Helper()
	dir := t.TempDir()
	b := &kernel.Bundle{Name: "test-kernel", Release: "6.1.0-test", Dir: dir, Config: "config"}
	if err := os.WriteFile(filepath.Join(dir, "config"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, m := range modules {
		file := "modules/" + m + ".ko"
		if err := os.MkdirAll(filepath.Join(dir, "modules"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, file), []byte("module "+m), 0o644); err != nil {
			t.Fatal(err)
		}
		b.Modules = append(b.Modules, kernel.Module{Name: m, File: file})
	}
	return b
}

func TestCheckKernel(t *testing.T) {
	tests := []struct {
		config  string
		wantErr string
	}{
		{"CONFIG_EXT4_FS=y\nCONFIG_BINFMT_SCRIPT=y\n", ""},
		{"CONFIG_EXT4_FS=m\nCONFIG_BINFMT_SCRIPT=y\n", "CONFIG_EXT4_FS=m"},
		// hull's tuned kernel.
		{"CONFIG_EXT4_FS=y\n# CONFIG_BINFMT_SCRIPT is not set\n", "CONFIG_BINFMT_SCRIPT built in"},
		{"", "CONFIG_EXT4_FS built in"},
	}
	for _, tt := range tests {
		t.Run(strings.ReplaceAll(strings.TrimSpace(tt.config), "\n", " "), func(t *testing.T) {
			err := CheckKernel(writeBundle(t, tt.config))
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("CheckKernel = %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}

// Stage 1 from a merged-/usr root whose tools are static programs (so
// their closure is just themselves): the script, the tools under their
// real paths with /bin as the link it is, and the modules in load order.
func TestWriteStage1(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go is not on the PATH to build a static test program")
	}
	work := t.TempDir()
	if err := os.WriteFile(filepath.Join(work, "main.go"), []byte("package main\n\nfunc main() {}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(work, "go.mod"), []byte("module stage1tool\n\ngo 1.21\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tool := filepath.Join(work, "tool")
	cmd := exec.Command(goTool, "build", "-o", tool, ".")
	cmd.Dir = work
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-buildvcs=false")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the static tool: %v\n%s", err, out)
	}
	root := t.TempDir()
	for _, p := range []string{"usr/bin", "usr/sbin"} {
		if err := os.MkdirAll(filepath.Join(root, p), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, l := range [][2]string{{"bin", "usr/bin"}, {"sbin", "usr/sbin"}} {
		if err := os.Symlink(l[1], filepath.Join(root, l[0])); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{"usr/bin/dash", "usr/sbin/insmod", "usr/bin/mount", "usr/sbin/switch_root", "usr/bin/sleep"} {
		if err := copyFile(tool, filepath.Join(root, p), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("dash", filepath.Join(root, "usr/bin/sh")); err != nil {
		t.Fatal(err)
	}
	b := writeBundle(t, "CONFIG_EXT4_FS=y\n", "virtio_ring", "virtio_blk")

	var buf bytes.Buffer
	files, err := WriteStage1(&buf, root, b)
	if err != nil {
		t.Fatalf("WriteStage1: %v", err)
	}
	entries := map[string]initramfs.Entry{}
	bodies := map[string]string{}
	r := initramfs.NewReader(&buf)
	for {
		e, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("reading the archive back: %v", err)
		}
		entries[e.Name] = e
		if e.IsRegular() && e.Size < 4096 {
			body, _ := io.ReadAll(r)
			bodies[e.Name] = string(body)
		}
	}
	if e := entries["init"]; !e.IsRegular() || e.Perm() != 0o755 || bodies["init"] != stage1Script {
		t.Errorf("/init = %+v, want the stage-1 script, mode 0755", e)
	}
	if got, want := bodies["usr/lib/modules/load-order"], "6.1.0-test/virtio_ring.ko\n6.1.0-test/virtio_blk.ko\n"; got != want {
		t.Errorf("load-order = %q, want %q", got, want)
	}
	for _, m := range []string{"usr/lib/modules/6.1.0-test/virtio_ring.ko", "usr/lib/modules/6.1.0-test/virtio_blk.ko",
		"usr/bin/dash", "usr/sbin/insmod", "usr/bin/mount", "usr/sbin/switch_root", "usr/bin/sleep"} {
		if e := entries[m]; !e.IsRegular() {
			t.Errorf("%s: %+v, want a regular file", m, e)
		}
	}
	for link, target := range map[string]string{"bin": "usr/bin", "usr/bin/sh": "dash"} {
		if e := entries[link]; !e.IsSymlink() || e.Link != target {
			t.Errorf("%s = %+v, want a symlink to %s", link, e, target)
		}
	}
	for _, d := range []string{"dev", "proc", "sys", "root"} {
		if e := entries[d]; !e.IsDir() {
			t.Errorf("%s = %+v, want a directory (stage 1 mounts there)", d, e)
		}
	}
	var paths []string
	for _, f := range files {
		paths = append(paths, f.Path)
	}
	slices.Sort(paths)
	want := []string{"/init", "/usr/bin/dash", "/usr/bin/mount", "/usr/bin/sleep", "/usr/lib/modules/6.1.0-test/virtio_blk.ko",
		"/usr/lib/modules/6.1.0-test/virtio_ring.ko", "/usr/lib/modules/load-order", "/usr/sbin/insmod", "/usr/sbin/switch_root"}
	if !reflect.DeepEqual(paths, want) {
		t.Errorf("reported files = %v, want %v", paths, want)
	}
}

// hullArgv is a QEMU command line as hull's runner builds it for cfg's
// machine (with --verbose, so hull.verbose=1 instead of quiet).
func hullArgv(c VMConfig, extraWords ...string) []string {
	words := append([]string{"console=ttyS0", "panic=-1", "reboot=t", "sysctl.vm.overcommit_memory=1", "hull.verbose=1", "tsc_early_khz=1999999"}, c.Boot.Cmdline...)
	return append([]string{"/usr/bin/qemu-system-x86_64"}, qemu.Args(qemu.Config{
		Accel: c.Accel, Name: "redis", Kernel: "/run/hull/i-1/vmlinux", Initrd: "/run/hull/i-1/initrd",
		Cmdline:   strings.Join(append(words, extraWords...), " "),
		MemoryMiB: c.MemoryMiB, CPUs: c.CPUs, NoACPI: c.Boot.NoACPI,
		ControlSock: "/run/hull/i-1/ctl.sock", Net: qemu.NetStream, NetSock: "/run/hull/i-1/net.sock", MTU: GatewayMTU,
		AppDisk: "/store/app.erofs",
	})...)
}

func TestDifferences(t *testing.T) {
	c := testVM()
	c.Boot = kernel.Boot{NoACPI: true, Cmdline: []string{"no_timer_check"}}
	if d := Differences(hullArgv(c), Args(c)); len(d) != 0 {
		t.Errorf("Differences of a like pair = %q, want none", d)
	}
	bigger := c
	bigger.MemoryMiB = 512
	if d := Differences(hullArgv(bigger), Args(c)); len(d) != 1 || !strings.Contains(d[0], "-m 512M") {
		t.Errorf("Differences with other memory = %q, want one naming -m 512M", d)
	}
	if d := Differences(hullArgv(c, "mitigations=off"), Args(c)); len(d) != 1 || !strings.Contains(d[0], "mitigations=off") {
		t.Errorf("Differences with another kernel word = %q, want one naming it", d)
	}
	if d := Differences(nil, Args(c)); len(d) != 1 {
		t.Errorf("Differences without a hull command line = %q, want one", d)
	}
}
