package guestinit

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"
)

func TestParseHexAddrPort(t *testing.T) {
	tests := []struct {
		in   string
		want string
		ok   bool
	}{
		{"0100007F:1F90", "127.0.0.1:8080", true},
		{"00000000:0050", "0.0.0.0:80", true},
		{"0F02000A:1F90", "10.0.2.15:8080", true},
		{"00000000000000000000000001000000:1F90", "[::1]:8080", true},
		{"0000000000000000FFFF00000100007F:0035", "127.0.0.1:53", true},
		{"zz:1F90", "", false},
		{"0100007F", "", false},
		{"0100007F:XYZ", "", false},
		{"01007F:0050", "", false},
	}
	for _, tt := range tests {
		got, ok := parseHexAddrPort(tt.in)
		if ok != tt.ok || (ok && got.String() != tt.want) {
			t.Errorf("parseHexAddrPort(%q) = %v, %v; want %s, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

func TestParseProcNetKeepsOnlyTheState(t *testing.T) {
	p := filepath.Join(t.TempDir(), "tcp")
	content := "  sl  local_address rem_address   st tx_queue rx_queue\n" +
		"   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000 0 1 1 0\n" +
		"   1: 0F02000A:1F90 0202000A:C350 01 00000000:00000000 00:00000000 00000000  1000 0 2 1 0\n" +
		"   2: 00000000:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000 0 3 1 0\n"
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	got := parseProcNet(p, "tcp", "0A")
	want := []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:8080"), netip.MustParseAddrPort("0.0.0.0:80")}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i].addr != want[i] || got[i].proto != "tcp" {
			t.Errorf("listener %d = %+v, want tcp %v", i, got[i], want[i])
		}
	}
}

func TestSplitLines(t *testing.T) {
	got := splitLines([]byte("F\n{\"error\":\"x\"}\n\nlast"))
	want := []string{"F", `{"error":"x"}`, "last"}
	if len(got) != len(want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	for i := range want {
		if string(got[i]) != want[i] {
			t.Errorf("line %d = %q, want %q", i, got[i], want[i])
		}
	}
}

func TestProgramInterp(t *testing.T) {
	interp, err := programInterp("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	// The test binary is a Go program: static unless cgo linked it.
	if interp != "" && interp != "/lib64/ld-linux-x86-64.so.2" {
		t.Errorf("interp = %q", interp)
	}
	if _, err := programInterp("/etc/hostname"); err == nil {
		t.Error("a text file has no PT_INTERP and is not an ELF: want an error")
	}
}
