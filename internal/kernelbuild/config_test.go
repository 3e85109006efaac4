package kernelbuild

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	hullkernel "github.com/hullvm/hull/kernel"
)

func TestParseFragment(t *testing.T) {
	good := "# a comment\n\nCONFIG_A=y\n# CONFIG_B is not set\nCONFIG_LSM=\"landlock\"\nCONFIG_NR=64\nCONFIG_H=0x10  \n"
	opts, err := ParseFragment([]byte(good))
	if err != nil {
		t.Fatalf("ParseFragment(good) = %v", err)
	}
	want := []Option{
		{"CONFIG_A", "y", 3}, {"CONFIG_B", "n", 4}, {"CONFIG_LSM", `"landlock"`, 5},
		{"CONFIG_NR", "64", 6}, {"CONFIG_H", "0x10", 7},
	}
	if !reflect.DeepEqual(opts, want) {
		t.Errorf("ParseFragment(good) = %v, want %v", opts, want)
	}

	tests := []struct {
		name, in, want string
	}{
		{"twice", "CONFIG_A=y\n# CONFIG_A is not set\n", "line 2: CONFIG_A is already set on line 1"},
		{"empty value", "CONFIG_A=\n", "line 1: CONFIG_A has no value"},
		{"bad value", "CONFIG_A=yes\n", `line 1: CONFIG_A: value "yes"`},
		{"open string", "CONFIG_A=\"x\n", "unterminated string"},
		{"garbage", "CONFIG_A y\n", `line 1: "CONFIG_A y" is not`},
		{"odd off form", "# CONFIG_A=n\n", `write an option off as`},
		{"off form without the space", "CONFIG_B=y\n#CONFIG_A is not set\n", `line 2: "#CONFIG_A is not set": write an option off as`},
		{"off form with two spaces", "#  CONFIG_A is not set\n", `line 1: "#  CONFIG_A is not set"`},
		{"commented-out option", "CONFIG_B=y\n#CONFIG_A=y\n", `line 2: "#CONFIG_A=y"`},
		{"nothing", "# only comments\n", "sets no options"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseFragment([]byte(tt.in))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("ParseFragment(%q) err = %v, want one containing %q", tt.in, err, tt.want)
			}
		})
	}
}

func TestMerge(t *testing.T) {
	base := "#\n# comment kept\n#\nCONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=m\nCONFIG_S=\"old\"\n"
	opts := mustParse(t, "# CONFIG_A is not set\nCONFIG_B=y\nCONFIG_S=\"new\"\nCONFIG_NEW=y\n# CONFIG_GONE is not set\n")
	got := string(Merge([]byte(base), opts))
	want := "#\n# comment kept\n#\n# CONFIG_A is not set\nCONFIG_B=y\nCONFIG_C=m\nCONFIG_S=\"new\"\n" +
		"# hull.config\nCONFIG_NEW=y\n# CONFIG_GONE is not set\n"
	if got != want {
		t.Errorf("Merge() =\n%s\nwant\n%s", got, want)
	}
	// Merging again changes nothing: the result already says it all.
	if again := string(Merge([]byte(got), opts)); again != got {
		t.Errorf("Merge is not idempotent:\n%s", again)
	}
}

func TestVerify(t *testing.T) {
	frag := mustParse(t, strings.Join([]string{
		"CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES=y", // line 1: dropped (dependency off)
		"# CONFIG_ACPI is not set",             // line 2: absent counts as off
		"# CONFIG_PCI is not set",              // line 3: turned back on by a select
		"CONFIG_MULTIUSER=y",                   // line 4: fine
		"CONFIG_HZ_100=y",                      // line 5: a choice that went elsewhere
		`CONFIG_LSM="landlock"`,                // line 6: another string won
		"CONFIG_NR_CPUS=64",                    // line 7: fine
		"# CONFIG_MODULES is not set",          // line 8: fine
	}, "\n"))
	config := strings.Join([]string{
		"CONFIG_PCI=y",
		"CONFIG_MULTIUSER=y",
		"# CONFIG_HZ_100 is not set",
		"CONFIG_HZ_250=y",
		`CONFIG_LSM="landlock,yama"`,
		"CONFIG_NR_CPUS=64",
		"# CONFIG_MODULES is not set",
	}, "\n")
	err := Verify([]byte(config), frag)
	var ve *VerifyError
	if !errors.As(err, &ve) {
		t.Fatalf("Verify() = %v, want a *VerifyError", err)
	}
	var got []string
	for _, m := range ve.Mismatches {
		got = append(got, m.Option.Name+"="+m.Got)
	}
	want := []string{"CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES=", "CONFIG_PCI=y", "CONFIG_HZ_100=n", `CONFIG_LSM="landlock,yama"`}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("mismatches = %q, want %q", got, want)
	}
	// The message names every culprit, its line and what Kconfig did.
	for _, s := range []string{
		"4 option(s)",
		"CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES (line 1): want y, got absent",
		"CONFIG_PCI (line 3): want n, got y",
		"CONFIG_HZ_100 (line 5): want y, got not set",
		`CONFIG_LSM (line 6): want "landlock", got "landlock,yama"`,
	} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("Verify() error %q lacks %q", err, s)
		}
	}

	ok := "CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES=y\nCONFIG_MULTIUSER=y\nCONFIG_HZ_100=y\nCONFIG_LSM=\"landlock\"\nCONFIG_NR_CPUS=64\n"
	if err := Verify([]byte(ok), frag); err != nil {
		t.Errorf("Verify(matching config) = %v, want nil", err)
	}
}

func TestKey(t *testing.T) {
	frag := []byte("CONFIG_A=y\n")
	p1 := []Patch{{Name: "0001-a.patch", Data: []byte("a")}}
	base := Key("6.1.192-3", frag, p1)
	if len(base) != 64 {
		t.Fatalf("Key() = %q, want 64 hex digits", base)
	}
	if again := Key("6.1.192-3", append([]byte(nil), frag...), []Patch{{Name: "0001-a.patch", Data: []byte("a")}}); again != base {
		t.Errorf("Key() is not a pure function of its inputs: %s != %s", again, base)
	}
	changed := map[string]string{
		"source version": Key("6.1.193-1", frag, p1),
		"fragment":       Key("6.1.192-3", []byte("CONFIG_A=n\n"), p1),
		"patch content":  Key("6.1.192-3", frag, []Patch{{Name: "0001-a.patch", Data: []byte("b")}}),
		"patch name":     Key("6.1.192-3", frag, []Patch{{Name: "0002-a.patch", Data: []byte("a")}}),
		"no patches":     Key("6.1.192-3", frag, nil),
		"more patches":   Key("6.1.192-3", frag, append(p1, Patch{Name: "0002-b.patch"})),
	}
	for what, k := range changed {
		if k == base {
			t.Errorf("changing the %s keeps the key %s", what, k)
		}
	}
}

func TestBootHints(t *testing.T) {
	lapic := []Patch{{Name: "0001-x86-apic-lapic_timer_period-parameter.patch"}, {Name: "0002-other.patch"}}
	got := BootHints(map[string]string{"CONFIG_HZ": "100"}, lapic)
	if !got.NoACPI || !reflect.DeepEqual(got.Cmdline, []string{"no_timer_check", "lapic_timer_period=10000000"}) {
		t.Errorf("BootHints(HZ=100) = %+v", got)
	}
	if got := BootHints(map[string]string{"CONFIG_HZ": "1000"}, lapic); got.Cmdline[1] != "lapic_timer_period=1000000" {
		t.Errorf("BootHints(HZ=1000) = %+v", got)
	}
	if got := BootHints(nil, lapic); len(got.Cmdline) != 1 {
		t.Errorf("BootHints(no HZ) = %+v, want no timer preset", got)
	}
	// Without the patch the kernel has no such parameter.
	for _, patches := range [][]Patch{nil, {{Name: "0002-other.patch"}}} {
		if got := BootHints(map[string]string{"CONFIG_HZ": "100"}, patches); !reflect.DeepEqual(got.Cmdline, []string{"no_timer_check"}) {
			t.Errorf("BootHints(HZ=100, patches %v) = %+v, want no lapic_timer_period", patches, got)
		}
	}
	// hull's own patch set carries it.
	own, err := ReadPatches(hullkernel.Patches(), "kernel/patches")
	if err != nil {
		t.Fatal(err)
	}
	if got := BootHints(map[string]string{"CONFIG_HZ": "100"}, own); len(got.Cmdline) != 2 {
		t.Errorf("BootHints(hull's patches) = %+v, want the lapic_timer_period preset", got)
	}
}

// hull's own fragment passes the parser, strict as it is.
func TestOwnFragmentParses(t *testing.T) {
	if _, err := ParseFragment(hullkernel.Fragment()); err != nil {
		t.Fatal(err)
	}
}

func TestParseAptStatus(t *testing.T) {
	tests := []struct {
		line string
		ok   bool
		frac float64
		msg  string
	}{
		{"dlstatus:1:42.5:Retrieving file 1 of 3", true, 0.425, "downloading: Retrieving file 1 of 3"},
		{"pmstatus:flex:80:Installing flex (amd64)", true, 0.8, "Installing flex (amd64)"},
		{"pmstatus:x:notanumber:y", false, 0, ""},
		{"media-change:x:y:z", false, 0, ""},
		{"garbage", false, 0, ""},
	}
	for _, tt := range tests {
		e, ok := parseAptStatus(tt.line)
		if ok != tt.ok || (ok && (e.Frac != tt.frac || e.Msg != tt.msg)) {
			t.Errorf("parseAptStatus(%q) = %+v, %v", tt.line, e, ok)
		}
	}
	if got := parseCandidate([]byte("linux-source-6.1:\n  Installed: (none)\n  Candidate: 6.1.192-3\n")); got != "6.1.192-3" {
		t.Errorf("parseCandidate = %q", got)
	}
	if got := parseCandidate([]byte("x:\n  Installed: (none)\n  Candidate: (none)\n")); got != "" {
		t.Errorf("parseCandidate(none) = %q", got)
	}
}

func mustParse(t *testing.T, s string) []Option {
	t.Helper()
	opts, err := ParseFragment([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return opts
}
