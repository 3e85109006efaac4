package hullcli

import (
	"reflect"
	"testing"

	"github.com/hullvm/hull/internal/vmm/qemu"
)

func TestQEMUArgv(t *testing.T) {
	// The line hull run --verbose prints, made by the same functions.
	argv := append([]string{"/usr/bin/qemu-system-x86_64"}, qemu.Args(qemu.Config{
		Accel: qemu.AccelTCG, Name: "redis", Kernel: "/k", Initrd: "/i", Cmdline: "console=ttyS0 quiet",
		MemoryMiB: 256, CPUs: 1, ControlSock: "/run/x/ctl.sock", Net: qemu.NetStream, NetSock: "/run/x/net.sock", MTU: 65520,
	})...)
	stderr := "hull: using software emulation (TCG); boots are slower than with KVM\n" +
		"hull: " + qemu.Quote(argv) + "\n[    0.000000] Linux version 6.1.0\n"
	if got := QEMUArgv(stderr); !reflect.DeepEqual(got, argv) {
		t.Errorf("QEMUArgv =\n%q\nwant\n%q", got, argv)
	}
	if got := QEMUArgv("hull: booting\nhull: qemu is slow\n"); got != nil {
		t.Errorf("QEMUArgv without a QEMU line = %q, want nil", got)
	}
}

func TestSplitQuoted(t *testing.T) {
	for _, argv := range [][]string{
		{"qemu-system-x86_64", "-append", "console=ttyS0 quiet", "-name", "it's", "-x", ""},
		{"plain", "words"},
		{},
	} {
		if got := splitQuoted(qemu.Quote(argv)); !reflect.DeepEqual(got, argv) && len(argv) > 0 {
			t.Errorf("splitQuoted(Quote(%q)) = %q", argv, got)
		}
	}
}

func TestLastLine(t *testing.T) {
	for in, want := range map[string]string{"": "", "one\n": "one", "a\nb\n\n": "b"} {
		if got := lastLine(in); got != want {
			t.Errorf("lastLine(%q) = %q, want %q", in, got, want)
		}
	}
}
