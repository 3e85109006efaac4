package kernel

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestArReader(t *testing.T) {
	type member struct{ name, data string }
	tests := []struct {
		name    string
		archive []byte
		want    []member
		err     string // from the last Next, "" for a clean io.EOF
	}{
		{"members with odd and even sizes", buildAr([]arMember{{"debian-binary", []byte("2.0\n")}, {"odd", []byte("abc")}, {"empty", nil}, {"last", []byte("xy")}}),
			[]member{{"debian-binary", "2.0\n"}, {"odd", "abc"}, {"empty", ""}, {"last", "xy"}}, ""},
		{"GNU trailing slash", buildAr([]arMember{{"data.tar.xz/", []byte("d")}}), []member{{"data.tar.xz", "d"}}, ""},
		{"BSD long name", []byte(arMagic + "#1/24           0           0     0     100644  25        `\nlong-name-member.tar\x00\x00\x00\x00x\n"),
			[]member{{"long-name-member.tar", "x"}}, ""},
		{"final padding dropped", buildAr([]arMember{{"odd", []byte("abc")}})[:len(arMagic)+60+3], []member{{"odd", "abc"}}, ""},
		{"truncated member", buildAr([]arMember{{"a", []byte("abcdef")}})[:len(arMagic)+60+3], []member{{"a", "abc"}}, "unexpected EOF"},
		{"truncated header", buildAr([]arMember{{"a", []byte("ab")}})[:len(arMagic)+30], nil, "unexpected EOF"},
		{"bad terminator", []byte(arMagic + strings.Repeat(" ", 58) + "xx"), nil, "bad member header"},
		{"negative size", []byte(arMagic + "a               0           0     0     100644  -1        `\n"), nil, "bad member size"},
		{"bad padding", append(buildAr([]arMember{{"odd", []byte("abc")}})[:len(arMagic)+63], 'X'), []member{{"odd", "abc"}}, "bad padding"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ar, err := newArReader(bytes.NewReader(tt.archive))
			must(t, err)
			var got []member
			var last error
			for {
				h, err := ar.Next()
				if err != nil {
					last = err
					break
				}
				data, err := io.ReadAll(ar)
				got = append(got, member{h.Name, string(data)})
				if err != nil {
					last = err
					break
				}
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("members = %q, want %q", got, tt.want)
			}
			if tt.err == "" && last != io.EOF || tt.err != "" && (last == nil || !strings.Contains(last.Error(), tt.err)) {
				t.Errorf("last error = %v, want %q", last, tt.err)
			}
		})
	}
	if _, err := newArReader(strings.NewReader("!<arch>")); !errors.Is(err, errNotAr) {
		t.Errorf("short magic: err = %v", err)
	}
}

func TestParseModinfo(t *testing.T) {
	tests := []struct {
		name string
		data []byte
		want modinfo
		err  string
	}{
		{"full", elfModule("license=GPL\x00depends=virtio_ring,virtio,net-failover,virtio\x00name=virtio_net\x00vermagic=6.1 SMP\x00"),
			modinfo{Name: "virtio_net", Depends: []string{"net_failover", "virtio", "virtio_ring"}, Vermagic: "6.1 SMP"}, ""},
		{"no depends", elfModule("name=virtio_ring\x00"), modinfo{Name: "virtio_ring", Depends: []string{}}, ""},
		{"first wins", elfModule("name=a\x00name=b\x00depends=x\x00depends=y\x00"), modinfo{Name: "a", Depends: []string{"x"}}, ""},
		{"padding and junk", elfModule("\x00\x00junk\x00name=a-b\x00\x00"), modinfo{Name: "a_b", Depends: []string{}}, ""},
		{"not ELF", []byte("#!/bin/sh\n"), modinfo{}, "not an ELF file"},
		{"no .modinfo", elfModule("")[:64], modinfo{}, ""},
		{"bad name", elfModule("name=a/b\x00"), modinfo{}, "bad module name"},
		{"bad depends", elfModule("depends=a,../b\x00"), modinfo{}, "bad dependency name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseModinfo(tt.data)
			if tt.err != "" || err != nil {
				if err == nil || tt.err != "" && !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				return
			}
			if got.Name != tt.want.Name || got.Vermagic != tt.want.Vermagic || !slices.Equal(got.Depends, tt.want.Depends) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

// The synthetic modules are hand-made ELF; this checks the parser against
// what a compiler really emits for MODULE_INFO.
func TestParseModinfoGCC(t *testing.T) {
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		t.Skip("gcc not installed: cannot cross-check against a compiled object")
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "m.c")
	must(t, os.WriteFile(src, []byte(`
__attribute__((section(".modinfo"), used, aligned(1))) static const char a[] = "license=GPL";
__attribute__((section(".modinfo"), used, aligned(1))) static const char b[] = "depends=virtio,virtio_ring";
__attribute__((section(".modinfo"), used, aligned(1))) static const char c[] = "name=virtio_mmio";
__attribute__((section(".modinfo"), used, aligned(1))) static const char d[] = "vermagic=6.1.0-57-cloud-amd64 SMP";
int f(void) { return 0; }
`), 0o644))
	obj := filepath.Join(dir, "m.ko")
	if out, err := exec.Command(gcc, "-c", "-O2", "-o", obj, src).CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, out)
	}
	data, err := os.ReadFile(obj)
	must(t, err)
	got, err := parseModinfo(data)
	must(t, err)
	if got.Name != "virtio_mmio" || !slices.Equal(got.Depends, []string{"virtio", "virtio_ring"}) || got.Vermagic != "6.1.0-57-cloud-amd64 SMP" {
		t.Errorf("parseModinfo(gcc object) = %+v", got)
	}
}

func TestLoadOrder(t *testing.T) {
	mods := func(spec ...string) map[string]Module {
		m := map[string]Module{}
		for _, s := range spec {
			name, deps, _ := strings.Cut(s, ":")
			d := []string{}
			if deps != "" {
				d = strings.Split(deps, ",")
			}
			m[name] = Module{Name: name, Depends: d}
		}
		return m
	}
	tests := []struct {
		name string
		mods map[string]Module
		skip map[string]bool
		want []string
		err  string
	}{
		{"empty", mods(), nil, []string{}, ""},
		{"chain", mods("c:b", "b:a", "a"), nil, []string{"a", "b", "c"}, ""},
		{"ties by name", mods("z", "y", "x:z"), nil, []string{"y", "z", "x"}, ""},
		{"builtin dependency", mods("a:core"), map[string]bool{"core": true}, []string{"a"}, ""},
		{"missing dependency", mods("a:b"), nil, nil, "a depends on b"},
		{"cycle", mods("a:b", "b:a", "c"), nil, nil, "cycle among a, b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := loadOrder(tt.mods, tt.skip)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				return
			}
			must(t, err)
			names := []string{}
			for _, m := range got {
				names = append(names, m.Name)
			}
			if !slices.Equal(names, tt.want) {
				t.Errorf("order = %v, want %v", names, tt.want)
			}
		})
	}
}

func TestParseControl(t *testing.T) {
	c := parseControl([]byte("Package: linux-image-cloud-amd64\nDepends: linux-image-6.1.0-57-cloud-amd64 (= 6.1.192-3),\n other-pkg\nDescription: x\n"))
	if c.Package != "linux-image-cloud-amd64" {
		t.Errorf("Package = %q", c.Package)
	}
	tests := []struct{ depends, want string }{
		{c.Depends, "linux-image-6.1.0-57-cloud-amd64"},
		{"kmod, linux-base (>= 4.3~), initramfs-tools | linux-initramfs-tool", ""},
		{"foo | linux-image-6.12.1-cloud-amd64-unsigned:amd64", "linux-image-6.12.1-cloud-amd64-unsigned"},
		{"linux-image-$(evil)", ""},
	}
	for _, tt := range tests {
		if got := firstImageDep(tt.depends); got != tt.want {
			t.Errorf("firstImageDep(%q) = %q, want %q", tt.depends, got, tt.want)
		}
	}
}
