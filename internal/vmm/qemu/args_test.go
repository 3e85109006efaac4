package qemu

import (
	"bytes"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/hullvm/hull/internal/manifest"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// configs are the command lines under test, by golden file name.
var configs = map[string]Config{
	"netuser-kvm": {
		Binary: "qemu-system-x86_64", Accel: AccelKVM, Name: "web",
		Kernel: "/store/kernels/abc/vmlinuz", Initrd: "/run/hull/web/initrd", Cmdline: "console=ttyS0 panic=-1 quiet",
		MemoryMiB: 128, CPUs: 2,
		ControlSock: "/run/hull/web/ctl.sock",
		Net:         NetUser, GuestIP: manifest.GuestIP, AppDisk: "/store/blobs/abc/app.erofs",
		Forwards: []Forward{
			{Proto: "tcp", HostIP: "127.0.0.1", HostPort: 8080, GuestPort: 80},
			{Proto: "udp", HostIP: "127.0.0.1", HostPort: 5353, GuestPort: 53},
		},
	},
	"netstream-tcg": {
		Binary: "qemu-system-x86_64", Accel: AccelTCG, Name: "worker",
		Kernel: "/k/vmlinuz", Initrd: "/r/initrd", Cmdline: "console=ttyS0 tsc_early_khz=2000000",
		MemoryMiB: 256, CPUs: 1,
		ControlSock: "/r/ctl.sock",
		Net:         NetStream, NetSock: "/r/net.sock", MAC: "52:54:00:aa:bb:cc",
		AppDisk: "/data/odd,name/app.erofs",
	},
	"netnone-tcg": {
		Accel: AccelTCG, Name: "offline", Kernel: "/k", Initrd: "/i", Cmdline: "quiet", MemoryMiB: 64, CPUs: 1,
		ControlSock: "/c", Net: NetNone,
	},
}

func TestArgsGolden(t *testing.T) {
	for name, cfg := range configs {
		t.Run(name, func(t *testing.T) {
			got := []byte(strings.Join(Args(cfg), "\n") + "\n")
			golden := filepath.Join("testdata", name+".golden")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("reading golden file (run with -update to create it): %v", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("Args(%s) differ from %s (rerun with -update if intended)\ngot:\n%s\nwant:\n%s", name, golden, got, want)
			}
		})
	}
}

// flagValues returns the values following each occurrence of flag.
func flagValues(args []string, flag string) []string {
	var out []string
	for i := 0; i+1 < len(args); i++ {
		if args[i] == flag {
			out = append(out, args[i+1])
		}
	}
	return out
}

// TestArgsInvariants states the promises of the package doc, so a golden
// file regenerated carelessly cannot drop one.
func TestArgsInvariants(t *testing.T) {
	for name, cfg := range configs {
		t.Run(name, func(t *testing.T) {
			a := Args(cfg)
			if m := flagValues(a, "-M"); len(m) != 1 || !strings.HasPrefix(m[0], "microvm,") {
				t.Errorf("-M = %q, want one microvm machine", m)
			}
			for _, f := range []string{"-nodefaults", "-no-user-config", "-nographic", "-no-reboot"} {
				if !slices.Contains(a, f) {
					t.Errorf("args lack %s", f)
				}
			}
			for _, f := range []string{"-display", "-vga", "-vnc", "-spice", "-monitor", "-qmp", "-usb", "-bios"} {
				if slices.Contains(a, f) {
					t.Errorf("args hold %s; want no display, monitor or firmware", f)
				}
			}
			sb := flagValues(a, "-sandbox")
			if len(sb) != 1 {
				t.Fatalf("-sandbox = %q, want exactly one", sb)
			}
			opts := strings.Split(sb[0], ",")
			if opts[0] != "on" {
				t.Errorf("-sandbox %q does not start with on", sb[0])
			}
			for _, d := range []string{"obsolete=deny", "elevateprivileges=deny", "spawn=deny", "resourcecontrol=deny"} {
				if !slices.Contains(opts, d) {
					t.Errorf("-sandbox %q lacks %s", sb[0], d)
				}
			}
			var consoles, serialDevs int
			for _, d := range flagValues(a, "-device") {
				if strings.Contains(d, "pci") {
					t.Errorf("-device %q: microvm guests get virtio-mmio devices only", d)
				}
				if strings.HasPrefix(d, "virtconsole,") {
					consoles++
				}
				if strings.HasPrefix(d, "virtserialport,") {
					t.Errorf("-device %q: extra virtio-serial ports cost the guest 4 MiB each", d)
				}
				if strings.HasPrefix(d, "virtio-serial-device") {
					serialDevs++
					if !strings.Contains(d, "max_ports=1") {
						t.Errorf("-device %q: want max_ports=1 (no multiport, one receive queue)", d)
					}
				}
			}
			// The guest init opens the one virtio console as its control
			// channel (manifest.ControlDevice).
			if consoles != 1 || serialDevs != 1 {
				t.Errorf("%d virtconsole on %d virtio-serial devices, want exactly 1 on 1", consoles, serialDevs)
			}
			cpu := flagValues(a, "-cpu")
			if cfg.Accel == AccelKVM && !reflect.DeepEqual(cpu, []string{"host"}) {
				t.Errorf("kvm: -cpu = %q, want [host]", cpu)
			}
			// Host passthrough needs kvm; under TCG the emulator's fullest
			// model, which halves the kernel's boot.
			if cfg.Accel != AccelKVM && !reflect.DeepEqual(cpu, []string{"max"}) {
				t.Errorf("%s: -cpu = %q, want [max]", cfg.Accel, cpu)
			}
			if got := flagValues(a, "-accel"); !reflect.DeepEqual(got, []string{cfg.Accel}) {
				t.Errorf("-accel = %q, want [%s]", got, cfg.Accel)
			}
			if got := flagValues(a, "-append"); !reflect.DeepEqual(got, []string{cfg.Cmdline}) {
				t.Errorf("-append = %q, want [%q] as one argument", got, cfg.Cmdline)
			}

			// The app disk is attached read-only, its path escaped for
			// QEMU's option syntax (a comma is written twice).
			drives := flagValues(a, "-drive")
			if cfg.AppDisk == "" {
				if len(drives) != 0 {
					t.Errorf("-drive = %q, want none without an app disk", drives)
				}
			} else {
				want := "file=" + strings.ReplaceAll(cfg.AppDisk, ",", ",,") + ",if=none,id=app,format=raw,readonly=on"
				if !reflect.DeepEqual(drives, []string{want}) {
					t.Errorf("-drive = %q, want [%q]", drives, want)
				}
				if !slices.Contains(flagValues(a, "-device"), "virtio-blk-device,drive=app") {
					t.Errorf("args lack the virtio-blk device for the app disk")
				}
			}

			netdevs := flagValues(a, "-netdev")
			switch cfg.Net {
			case NetUser:
				if len(netdevs) != 1 {
					t.Fatalf("-netdev = %q, want one user netdev", netdevs)
				}
				opts := strings.Split(netdevs[0], ",")
				if opts[0] != "user" || !slices.Contains(opts, "restrict=on") {
					t.Errorf("-netdev %q, want user with restrict=on (no egress)", netdevs[0])
				}
				var fwds []string
				for _, o := range opts {
					if f, ok := strings.CutPrefix(o, "hostfwd="); ok {
						fwds = append(fwds, f)
					}
				}
				if want := []string{"tcp:127.0.0.1:8080-10.0.2.15:80", "udp:127.0.0.1:5353-10.0.2.15:53"}; !reflect.DeepEqual(fwds, want) {
					t.Errorf("hostfwd = %q, want %q", fwds, want)
				}
			case NetStream:
				if len(netdevs) != 1 || !strings.HasPrefix(netdevs[0], "stream,") || !strings.Contains(netdevs[0], "addr.path="+cfg.NetSock) {
					t.Errorf("-netdev = %q, want one stream netdev on %s", netdevs, cfg.NetSock)
				}
				if strings.Contains(netdevs[0], "user") {
					t.Errorf("-netdev %q: stream mode must not add a user-mode stack", netdevs[0])
				}
			case NetNone:
				if len(netdevs) != 0 {
					t.Errorf("-netdev = %q, want none", netdevs)
				}
			}
			if cfg.Net != NetNone && cfg.MAC != "" && !slices.Contains(flagValues(a, "-device"), "virtio-net-device,netdev=n0,mac="+cfg.MAC) {
				t.Errorf("args lack the NIC with MAC %s", cfg.MAC)
			}
		})
	}
}

func TestQuoteRoundTrip(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skipf("no sh on this host: %v", err)
	}
	tests := [][]string{
		{"qemu-system-x86_64", "-m", "128M"},
		{"with space", "two  spaces", " lead", "trail "},
		{"it's", "'", "''", `"double"`, `mixed '"' quotes`},
		{"$HOME", "${PATH}", "`id`", "$(id)", "!bang", "a;b", "a|b", "a&b", "*", "?", "~", "[x]", "#hash"},
		{"", "x", ""},
		{"back\\slash", "new\nline", "tab\there", "ünï ☃"},
		{"-append", "console=ttyS0 panic=-1 quiet", "-netdev", "user,id=n0,hostfwd=tcp:127.0.0.1:8080-10.0.2.15:80"},
	}
	for _, args := range tests {
		t.Run(strings.Join(args, "_"), func(t *testing.T) {
			quoted := Quote(args)
			// The shell parses the quoted line as a user pasting it would,
			// then prints each word NUL-terminated.
			cmd := exec.Command(sh, "-c", `set -- `+quoted+`; for a in "$@"; do printf '%s\0' "$a"; done`)
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("sh -c with %s: %v", quoted, err)
			}
			got := strings.Split(strings.TrimSuffix(string(out), "\x00"), "\x00")
			if !reflect.DeepEqual(got, args) {
				t.Errorf("sh parsed Quote(%q) = %s as %q, want the original", args, quoted, got)
			}
		})
	}
}

func TestQuoteLeavesPlainWordsBare(t *testing.T) {
	tests := []struct {
		in   []string
		want string
	}{
		{[]string{"-m", "128M", "-smp", "2"}, "-m 128M -smp 2"},
		{[]string{"path=/run/x.sock,id=ctl"}, "path=/run/x.sock,id=ctl"},
		{[]string{"a b"}, "'a b'"},
		{[]string{""}, "''"},
		{[]string{"it's"}, `'it'\''s'`},
	}
	for _, tt := range tests {
		if got := Quote(tt.in); got != tt.want {
			t.Errorf("Quote(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

func TestCPUHasVirt(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name    string
		cpuinfo string
		want    bool
	}{
		{"intel vmx", "processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: fpu vme de pse vmx sse sse2\n", true},
		{"amd svm", "processor\t: 0\nflags\t\t: fpu svm lm\n", true},
		{"no virtualisation", "processor\t: 0\nflags\t\t: fpu vme de pse sse sse2 hypervisor\n", false},
		{"look-alike flag", "flags\t\t: fpu vmxx svm_lock\n", false},
		{"vmx only in another line", "model name\t: vmx svm\nflags\t\t: fpu\n", false},
		{"no flags line", "processor\t: 0\n", false},
		{"empty", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "-"))
			if err := os.WriteFile(p, []byte(tt.cpuinfo), 0o644); err != nil {
				t.Fatal(err)
			}
			if got := cpuHasVirt(p); got != tt.want {
				t.Errorf("cpuHasVirt(%q) = %v, want %v", tt.cpuinfo, got, tt.want)
			}
		})
	}
	if cpuHasVirt(filepath.Join(dir, "missing")) {
		t.Errorf("cpuHasVirt(missing file) = true, want false")
	}
}

func TestChooseAccel(t *testing.T) {
	if _, _, err := ChooseAccel("bogus"); err == nil || !strings.Contains(err.Error(), "bogus") {
		t.Errorf("ChooseAccel(bogus) error = %v, want one naming the value", err)
	}
	accel, reason, err := ChooseAccel("tcg")
	if err != nil || accel != AccelTCG || !strings.Contains(reason, "forced") {
		t.Errorf("ChooseAccel(tcg) = %q, %q, %v; want tcg, forced, nil", accel, reason, err)
	}
	// auto and "" follow kvmUsable on this host, whatever it is.
	usable := kvmUsable()
	for _, want := range []string{"auto", ""} {
		accel, reason, err := ChooseAccel(want)
		if err != nil {
			t.Fatalf("ChooseAccel(%q) error = %v, want nil (auto never fails)", want, err)
		}
		if usable == nil && accel != AccelKVM {
			t.Errorf("ChooseAccel(%q) = %s, want kvm (usable here)", want, accel)
		}
		if usable != nil && (accel != AccelTCG || !strings.Contains(reason, usable.Error())) {
			t.Errorf("ChooseAccel(%q) = %s, %q; want tcg with the reason %q", want, accel, reason, usable)
		}
	}
	_, _, err = ChooseAccel("kvm")
	if (err == nil) != (usable == nil) {
		t.Errorf("ChooseAccel(kvm) error = %v, want error iff KVM unusable (%v)", err, usable)
	}
}

func TestBinaryOverride(t *testing.T) {
	t.Setenv("HULL_QEMU", "/opt/qemu/bin/qemu-system-x86_64")
	if got, err := Binary(); err != nil || got != "/opt/qemu/bin/qemu-system-x86_64" {
		t.Errorf("Binary() = %q, %v; want the HULL_QEMU path", got, err)
	}
}
