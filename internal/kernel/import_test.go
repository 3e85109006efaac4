package kernel

import (
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestImportDeb(t *testing.T) {
	tests := []struct {
		name string
		spec func(*debSpec)
	}{
		{"xz", func(d *debSpec) {}},
		{"gzip", func(d *debSpec) { d.comp = ".gz" }},
		{"zstd", func(d *debSpec) { d.comp = ".zst" }},
		{"uncompressed", func(d *debSpec) { d.comp = "" }},
		{"dependencies after their users", func(d *debSpec) { d.reverse = true }},
		{"compressed modules", func(d *debSpec) {
			d.mods = slices.Clone(d.mods)
			for i := range d.mods {
				d.mods[i].path += []string{".xz", ".zst", ".gz"}[i%3]
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			spec := defaultSpec()
			tt.spec(&spec)
			deb := spec.write(t)
			s := newStore(t)
			b, err := s.ImportDeb(context.Background(), deb, nil)
			if err != nil {
				t.Fatalf("ImportDeb: %v", err)
			}
			if got := moduleNames(b); !slices.Equal(got, wantOrder) {
				t.Errorf("load order = %v, want %v", got, wantOrder)
			}
			checkLoadOrder(t, b)
			for _, c := range []struct{ field, got, want string }{
				{"Name", b.Name, "debian-" + testRelease},
				{"Release", b.Release, testRelease},
				{"Source", b.Source, filepath.Base(deb)},
				{"Kernel", b.Kernel, "vmlinuz"},
				{"Config", b.Config, "config"},
				{"Dir", b.Dir, filepath.Join(s.Dir, b.Digest)},
			} {
				if c.got != c.want {
					t.Errorf("%s = %q, want %q", c.field, c.got, c.want)
				}
			}
			if b.Builtin {
				t.Error("Builtin = true for a .deb import")
			}
			srcSum, _, err := hashFile(deb)
			must(t, err)
			if b.SourceSHA256 != srcSum {
				t.Errorf("SourceSHA256 = %s, want %s", b.SourceSHA256, srcSum)
			}
			jsonSum, _, err := hashFile(filepath.Join(b.Dir, "bundle.json"))
			must(t, err)
			if b.Digest != jsonSum {
				t.Errorf("Digest = %s, sha256(bundle.json) = %s", b.Digest, jsonSum)
			}
			kernelSum, kernelSize, err := hashFile(b.KernelPath())
			must(t, err)
			if b.KernelSHA256 != kernelSum || b.KernelSize != kernelSize {
				t.Errorf("kernel = %s/%d, file has %s/%d", b.KernelSHA256, b.KernelSize, kernelSum, kernelSize)
			}
			for _, m := range b.Modules {
				sum, size, err := hashFile(b.ModulePath(m))
				must(t, err)
				if m.SHA256 != sum || m.Size != size {
					t.Errorf("module %s = %s/%d, file has %s/%d", m.Name, m.SHA256, m.Size, sum, size)
				}
				if want := "modules/" + m.Name + ".ko"; m.File != want {
					t.Errorf("module %s file = %q, want %q", m.Name, m.File, want)
				}
				data, err := os.ReadFile(b.ModulePath(m))
				must(t, err)
				if mi, err := parseModinfo(data); err != nil || mi.Name != m.Name {
					t.Errorf("stored module %s is not a plain module: %+v, %v", m.Name, mi, err)
				}
			}
			if got, want := b.Modules[slices.Index(wantOrder, "virtio_net")].Depends, []string{"net_failover", "virtio", "virtio_ring"}; !slices.Equal(got, want) {
				t.Errorf("virtio_net depends = %v, want %v", got, want)
			}
			must(t, b.Verify())
			if def, err := s.Default(); err != nil || def != b.Digest {
				t.Errorf("Default() = %q, %v; want %q", def, err, b.Digest)
			}
			if got, want := storeEntries(t, s), sorted(b.Digest, "default", "tags"); !slices.Equal(got, want) {
				t.Errorf("store holds %v, want %v", got, want)
			}
			if got := b.ConfigValue("CONFIG_VIRTIO_MMIO"); got != "m" {
				t.Errorf(`ConfigValue("CONFIG_VIRTIO_MMIO") = %q, want "m"`, got)
			}
		})
	}
}

// The digest depends on the package and the module list, not on when or
// in which order things were read.
func TestImportDebDeterministic(t *testing.T) {
	spec := defaultSpec()
	data := spec.bytes(t)
	digest := func(want []string) string {
		t.Helper()
		b, err := newStore(t).ImportDeb(context.Background(), writeTemp(t, spec.file, data), want)
		must(t, err)
		return b.Digest
	}
	first := digest(nil)
	tests := []struct {
		name string
		want []string
		same bool
	}{
		{"same package again", nil, true},
		{"defaults spelled out, shuffled, with dashes", []string{"virtio-blk", "virtio_rng", "erofs", "virtio_net", "virtio_console", "virtio_mmio"}, true},
		{"fewer modules", []string{"virtio_mmio"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := digest(tt.want) == first; got != tt.same {
				t.Errorf("same digest = %v, want %v", got, tt.same)
			}
		})
	}
}

func TestImportDebFiles(t *testing.T) {
	s := newStore(t)
	b, err := s.ImportDeb(context.Background(), defaultSpec().write(t), nil)
	must(t, err)
	var got []string
	err = filepath.Walk(s.Dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(s.Dir, p)
		got = append(got, filepath.ToSlash(rel)+" "+fi.Mode().String())
		return nil
	})
	must(t, err)
	d := b.Digest
	want := []string{". drwxr-xr-x", d + " drwxr-xr-x", d + "/bundle.json -rw-r--r--", d + "/config -rw-r--r--", d + "/modules drwxr-xr-x"}
	for _, m := range slices.Sorted(slices.Values(wantOrder)) {
		want = append(want, d+"/modules/"+m+".ko -rw-r--r--")
	}
	want = append(want, d+"/vmlinuz -rw-r--r--", "default -rw-r--r--", "tags drwxr-xr-x", "tags/"+b.Name+" -rw-r--r--")
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("store tree:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// bundle.json is canonical: what json.MarshalIndent makes of itself.
	data, err := os.ReadFile(filepath.Join(b.Dir, "bundle.json"))
	must(t, err)
	var back Bundle
	must(t, json.Unmarshal(data, &back))
	again, err := json.MarshalIndent(&back, "", "  ")
	must(t, err)
	if string(again)+"\n" != string(data) {
		t.Errorf("bundle.json is not canonical:\n%s", data)
	}
	if strings.Contains(string(data), "time") || strings.Contains(string(data), s.Dir) {
		t.Errorf("bundle.json holds a time or a host path:\n%s", data)
	}
}

func TestReimport(t *testing.T) {
	s := newStore(t)
	deb := defaultSpec().write(t)
	first, err := s.ImportDeb(context.Background(), deb, nil)
	must(t, err)
	t.Run("identical", func(t *testing.T) {
		again, err := s.ImportDeb(context.Background(), deb, nil)
		if err != nil {
			t.Fatalf("re-import: %v", err)
		}
		if again.Digest != first.Digest {
			t.Errorf("digest = %s, want %s", again.Digest, first.Digest)
		}
		if got, want := storeEntries(t, s), sorted(first.Digest, "default", "tags"); !slices.Equal(got, want) {
			t.Errorf("store holds %v, want %v", got, want)
		}
	})
	t.Run("repairs a damaged bundle", func(t *testing.T) {
		flipByte(t, filepath.Join(first.Dir, "modules", "virtio.ko"))
		if first.Verify() == nil {
			t.Fatal("Verify passed on a damaged bundle")
		}
		again, err := s.ImportDeb(context.Background(), deb, nil)
		must(t, err)
		if err := again.Verify(); err != nil {
			t.Errorf("after re-import: %v", err)
		}
		if got, want := storeEntries(t, s), sorted(first.Digest, "default", "tags"); !slices.Equal(got, want) {
			t.Errorf("store holds %v, want %v", got, want)
		}
	})
	t.Run("a new import of the same kernel becomes the default", func(t *testing.T) {
		other, err := s.ImportDeb(context.Background(), deb, []string{"virtio_rng"})
		must(t, err)
		if got, want := moduleNames(other), []string{"virtio_ring", "virtio", "virtio_rng"}; !slices.Equal(got, want) {
			t.Errorf("modules = %v, want %v", got, want)
		}
		if def, _ := s.Default(); def != other.Digest {
			t.Errorf("default = %s, want the newer import %s", def, other.Digest)
		}
	})
}

func TestImportSweepsStaleTemp(t *testing.T) {
	s := newStore(t)
	old := filepath.Join(s.Dir, ".tmp-killed")
	fresh := filepath.Join(s.Dir, ".tmp-running")
	for _, d := range []string{old, fresh} {
		must(t, os.MkdirAll(d, 0o755))
		must(t, os.WriteFile(filepath.Join(d, ".spool"), []byte("x"), 0o600))
	}
	long := time.Now().Add(-2 * staleAge)
	must(t, os.Chtimes(old, long, long))
	b, err := s.ImportDeb(context.Background(), defaultSpec().write(t), nil)
	must(t, err)
	if got, want := storeEntries(t, s), sorted(b.Digest, "default", ".tmp-running", "tags"); !slices.Equal(got, want) {
		t.Errorf("store holds %v, want %v", got, want)
	}
}

func flipByte(t testing.TB, path string) {
	t.Helper()
	data, err := os.ReadFile(path)
	must(t, err)
	data[len(data)/2] ^= 0x01
	must(t, os.WriteFile(path, data, 0o644))
}

func TestVerify(t *testing.T) {
	tests := []struct {
		name   string
		damage func(t *testing.T, b *Bundle)
		want   string // file named in the error
	}{
		{"kernel byte flipped", func(t *testing.T, b *Bundle) { flipByte(t, b.KernelPath()) }, "vmlinuz"},
		{"config byte flipped", func(t *testing.T, b *Bundle) { flipByte(t, filepath.Join(b.Dir, "config")) }, "config"},
		{"module byte flipped", func(t *testing.T, b *Bundle) { flipByte(t, filepath.Join(b.Dir, "modules/virtio_net.ko")) }, "modules/virtio_net.ko"},
		{"module removed", func(t *testing.T, b *Bundle) { must(t, os.Remove(filepath.Join(b.Dir, "modules/failover.ko"))) }, "modules/failover.ko"},
		{"module grown", func(t *testing.T, b *Bundle) {
			f, err := os.OpenFile(filepath.Join(b.Dir, "modules/virtio.ko"), os.O_APPEND|os.O_WRONLY, 0)
			must(t, err)
			f.Write([]byte{0})
			must(t, f.Close())
		}, "modules/virtio.ko"},
		{"bundle.json edited", func(t *testing.T, b *Bundle) { flipByte(t, filepath.Join(b.Dir, "bundle.json")) }, "bundle.json"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b, err := newStore(t).ImportDeb(context.Background(), defaultSpec().write(t), nil)
			must(t, err)
			must(t, b.Verify())
			tt.damage(t, b)
			err = b.Verify()
			if err == nil {
				t.Fatal("Verify() = nil after damage")
			}
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), tt.want+" ") {
				t.Errorf("Verify() = %v; want ErrCorrupt naming %s", err, tt.want)
			}
		})
	}
}

func TestImportDebErrors(t *testing.T) {
	valid := defaultSpec().bytes(t)
	tests := []struct {
		name    string
		deb     func(t *testing.T) string
		want    []string // in the error text
		modules []string // to import; nil for the defaults
	}{
		{"empty file", func(t *testing.T) string { return writeTemp(t, "x.deb", nil) }, []string{"not an ar archive"}, nil},
		{"text file", func(t *testing.T) string { return writeTemp(t, "x.deb", []byte("hello, world\n")) }, []string{"not an ar archive"}, nil},
		{"other ar archive", func(t *testing.T) string {
			return writeTemp(t, "libx.a", buildAr([]arMember{{"x.o", []byte("obj")}}))
		}, []string{`first member is "x.o"`}, nil},
		{"truncated in the header", func(t *testing.T) string { return writeTemp(t, "x.deb", valid[:70]) }, []string{"damaged ar archive"}, nil},
		{"truncated in data.tar", func(t *testing.T) string { return writeTemp(t, "x.deb", valid[:len(valid)-300]) }, []string{"data.tar.xz is damaged"}, nil},
		{"truncated after control.tar", func(t *testing.T) string {
			return writeTemp(t, "x.deb", buildAr([]arMember{{"debian-binary", []byte("2.0\n")}, {"control.tar.xz", compress(t, ".xz", buildTar(t, nil))}}))
		}, []string{"no data.tar"}, nil},
		{"garbage data.tar", func(t *testing.T) string {
			return writeTemp(t, "x.deb", buildAr([]arMember{{"debian-binary", []byte("2.0\n")}, {"data.tar.gz", []byte("garbage garbage garbage")}}))
		}, []string{"data.tar.gz is damaged"}, nil},
		{"unsupported compression", func(t *testing.T) string {
			return writeTemp(t, "x.deb", buildAr([]arMember{{"debian-binary", []byte("2.0\n")}, {"data.tar.lzma", []byte("]\x00\x00")}}))
		}, []string{"unsupported compression"}, nil},
		{"format 3", func(t *testing.T) string {
			return writeTemp(t, "x.deb", buildAr([]arMember{{"debian-binary", []byte("3.0\n")}}))
		}, []string{"format version"}, nil},
		{"metapackage", func(t *testing.T) string {
			d := debSpec{file: "linux-image-cloud-amd64_6.1.192-3_amd64.deb", release: testRelease, comp: ".xz", noKernel: true,
				control: "Package: linux-image-cloud-amd64\nSource: linux-signed-amd64\nVersion: 6.1.192-3\nDepends: linux-image-6.1.0-57-cloud-amd64 (= 6.1.192-3)\nDescription: Linux for x86-64 cloud (meta-package)\n This package depends on the latest Linux kernel.\n"}
			return d.write(t)
		}, []string{"linux-image-cloud-amd64 is a metapackage", "apt-get download linux-image-6.1.0-57-cloud-amd64"}, nil},
		{"no kernel", func(t *testing.T) string {
			d := defaultSpec()
			d.noKernel = true
			return d.write(t)
		}, []string{"no boot/vmlinuz-* inside", "not a linux-image package"}, nil},
		{"two kernels", func(t *testing.T) string {
			d := defaultSpec()
			d.extra = []tarFile{{name: "./boot/vmlinuz-6.1.0-98-cloud-amd64", body: fakeBzImage("k")}}
			return d.write(t)
		}, []string{"two kernels"}, nil},
		{"kernel is a text file", func(t *testing.T) string {
			d := defaultSpec()
			d.noKernel = true
			d.extra = []tarFile{{name: "./boot/vmlinuz-" + testRelease, body: []byte("hi")}}
			return d.write(t)
		}, []string{"boot/vmlinuz-" + testRelease + " is 2 bytes, too small for an x86 kernel"}, nil},
		{"kernel without a boot header", func(t *testing.T) string {
			d := defaultSpec()
			d.noKernel = true
			d.extra = []tarFile{{name: "./boot/vmlinuz-" + testRelease, body: make([]byte, 1<<20)}}
			return d.write(t)
		}, []string{"boot/vmlinuz-" + testRelease + ` is not an x86 kernel (bzImage): no "HdrS"`}, nil},
		{"kernel is only a boot header", func(t *testing.T) string {
			img := fakeBzImage("")
			img[bzSetupSects] = 127 // setup claims all of the file
			d := defaultSpec()
			d.noKernel = true
			d.extra = []tarFile{{name: "./boot/vmlinuz-" + testRelease, body: img}}
			return d.write(t)
		}, []string{"no kernel after its 65536 setup bytes"}, nil},
		{"needed module missing", func(t *testing.T) string {
			d := defaultSpec()
			d.mods = slices.DeleteFunc(slices.Clone(d.mods), func(m fakeMod) bool { return m.name == "failover" })
			return d.write(t)
		}, []string{"module failover, needed by net_failover, is not in the package"}, nil},
		{"wrong vermagic", func(t *testing.T) string {
			d := defaultSpec()
			d.mods = slices.Clone(d.mods)
			d.mods[0].vermagic = "6.1.0-1-amd64"
			return d.write(t)
		}, []string{"virtio_blk was built for kernel 6.1.0-1-amd64"}, nil},
		{"modules of another release", func(t *testing.T) string {
			d := defaultSpec()
			d.extra = []tarFile{{name: "./lib/modules/6.1.0-1-amd64/kernel/virtio_blk.ko", body: fakeMod{name: "virtio_blk"}.bytes("6.1.0-1-amd64")}}
			return d.write(t)
		}, []string{"module virtio_blk comes from two files"}, nil},
		{"needed module not ELF", func(t *testing.T) string {
			d := defaultSpec()
			d.mods = slices.DeleteFunc(slices.Clone(d.mods), func(m fakeMod) bool { return m.name == "virtio_ring" })
			d.extra = []tarFile{{name: "./lib/modules/" + testRelease + "/kernel/drivers/virtio/virtio_ring.ko", body: []byte("#!/bin/sh\n")}}
			return d.write(t)
		}, []string{"module virtio_ring", "not an ELF file"}, nil},
		{"dependency escaping the bundle", func(t *testing.T) string {
			d := defaultSpec()
			d.mods = append(slices.Clone(d.mods), fakeMod{path: "kernel/evil/virtio-rng.ko", name: "virtio_rng", deps: "../../../etc/passwd"})
			d.mods = slices.DeleteFunc(d.mods, func(m fakeMod) bool { return m.path == "kernel/drivers/char/hw_random/virtio-rng.ko" })
			return d.write(t)
		}, []string{"virtio_rng", "bad dependency name"}, nil},
		{"dependency cycle", func(t *testing.T) string {
			d := defaultSpec()
			d.mods = append(slices.Clone(d.mods), fakeMod{path: "kernel/a.ko", name: "a", deps: "b"}, fakeMod{path: "kernel/b.ko", name: "b", deps: "a"})
			return d.write(t)
		}, []string{"cycle among a, b"}, []string{"a"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			deb := tt.deb(t)
			s := newStore(t)
			b, err := s.ImportDeb(context.Background(), deb, tt.modules)
			if err == nil {
				t.Fatalf("ImportDeb succeeded: %+v", b)
			}
			var fe *FormatError
			if !errors.As(err, &fe) || fe.Path != deb {
				t.Errorf("error %v (%T) is not a *FormatError for %s", err, err, deb)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error spans lines: %q", err)
			}
			if got := storeEntries(t, s); len(got) != 0 {
				t.Errorf("store holds %v after a failed import", got)
			}
		})
	}
}

func TestImportDebWant(t *testing.T) {
	deb := defaultSpec().write(t)
	tests := []struct {
		name    string
		want    []string
		modules []string
		err     string
	}{
		{"empty list", []string{}, nil, ""},
		{"builtin module", []string{"virtio_pci_legacy_dev", "virtio_rng"}, []string{"virtio_ring", "virtio", "virtio_rng"}, ""},
		{"file name spelling", []string{"virtio-rng.ko"}, []string{"virtio_ring", "virtio", "virtio_rng"}, ""},
		{"unknown module", []string{"virtio_mmio", "virtio_foo"}, nil, "module virtio_foo is neither in the package nor built into kernel " + testRelease},
		{"bad name", []string{"../x"}, nil, `bad module name "../x"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t)
			b, err := s.ImportDeb(context.Background(), deb, tt.want)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want one containing %q", err, tt.err)
				}
				if got := storeEntries(t, s); len(got) != 0 {
					t.Errorf("store holds %v after a failed import", got)
				}
				return
			}
			must(t, err)
			if got := moduleNames(b); !slices.Equal(got, tt.modules) {
				t.Errorf("modules = %v, want %v", got, tt.modules)
			}
		})
	}
}

// countdownCtx reports cancellation after a number of Err calls, to cancel
// an import at every point where it checks.
type countdownCtx struct {
	context.Context
	left atomic.Int64
}

func (c *countdownCtx) Err() error {
	if c.left.Add(-1) < 0 {
		return context.Canceled
	}
	return nil
}

func TestImportDebCancel(t *testing.T) {
	deb := defaultSpec().write(t)
	t.Run("before start", func(t *testing.T) {
		s := newStore(t)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := s.ImportDeb(ctx, deb, nil); !errors.Is(err, context.Canceled) {
			t.Errorf("err = %v, want context.Canceled", err)
		}
		if got := storeEntries(t, s); len(got) != 0 {
			t.Errorf("store holds %v", got)
		}
	})
	t.Run("at every check", func(t *testing.T) {
		s := newStore(t)
		for n := int64(0); ; n++ {
			if n > 100000 {
				t.Fatal("import never finished")
			}
			ctx := &countdownCtx{Context: context.Background()}
			ctx.left.Store(n)
			_, err := s.ImportDeb(ctx, deb, nil)
			if err == nil {
				t.Logf("import finished after %d checks", n)
				break
			}
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("cancel after %d checks: err = %v, want context.Canceled", n, err)
			}
			if got := storeEntries(t, s); len(got) != 0 {
				t.Fatalf("cancel after %d checks: store holds %v", n, got)
			}
		}
	})
}

func TestStoreGet(t *testing.T) {
	s := newStore(t)
	t.Run("empty store", func(t *testing.T) {
		_, err := s.Get("")
		if !errors.Is(err, ErrNoKernel) || !strings.Contains(err.Error(), "hull kernel import <linux-image-*.deb>") || !strings.Contains(err.Error(), "make kernel") {
			t.Errorf("err = %v, want ErrNoKernel saying how to import", err)
		}
		if list, err := s.List(); err != nil || len(list) != 0 {
			t.Errorf("List() = %v, %v; want empty", list, err)
		}
		if def, err := s.Default(); def != "" || err != nil {
			t.Errorf("Default() = %q, %v; want empty", def, err)
		}
	})
	deb := defaultSpec().write(t)
	a, err := s.ImportDeb(context.Background(), deb, nil)
	must(t, err)
	b, err := s.ImportDeb(context.Background(), deb, []string{"virtio_mmio"})
	must(t, err)
	kernel := writeTemp(t, "bzImage", fakeBzImage("tuned kernel"))
	c, err := s.Add(context.Background(), "hull-tuned", "6.1.99-hull", kernel, "")
	must(t, err)
	// Temporary and foreign entries are not bundles.
	must(t, os.MkdirAll(filepath.Join(s.Dir, ".tmp-12345", "modules"), 0o755))
	must(t, os.WriteFile(filepath.Join(s.Dir, "notes.txt"), []byte("x"), 0o644))

	tests := []struct {
		ref  string
		want *Bundle
		err  error
	}{
		// b re-imported a's kernel, so it superseded a as the default and
		// is what the shared name means.
		{"", b, nil},
		{"debian-" + testRelease, b, nil},
		{"hull-tuned", c, nil},
		{a.Digest, a, nil},
		{strings.ToUpper(b.Digest), b, nil},
		{a.Digest[:6], a, nil},
		{c.Digest[:10], c, nil},
		{a.Digest[:5], nil, ErrNotFound},
		{"nope", nil, ErrNotFound},
		{strings.Repeat("0", 64), nil, ErrNotFound},
	}
	for _, tt := range tests {
		t.Run("ref="+tt.ref, func(t *testing.T) {
			got, err := s.Get(tt.ref)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("Get(%q) = %v, %v; want %v", tt.ref, got, err, tt.err)
				}
				return
			}
			if err != nil || got.Digest != tt.want.Digest {
				t.Fatalf("Get(%q) = %v, %v; want %s", tt.ref, got, err, tt.want.Digest)
			}
			if got.Dir != tt.want.Dir || got.Name != tt.want.Name || len(got.Modules) != len(tt.want.Modules) {
				t.Errorf("Get(%q) = %+v, want %+v", tt.ref, got, tt.want)
			}
		})
	}
	t.Run("List", func(t *testing.T) {
		list, err := s.List()
		must(t, err)
		var got []string
		for _, x := range list {
			got = append(got, x.Name+" "+x.Digest)
		}
		want := []string{a.Name + " " + min(a.Digest, b.Digest), a.Name + " " + max(a.Digest, b.Digest), c.Name + " " + c.Digest}
		if !slices.Equal(got, want) {
			t.Errorf("List() = %v, want %v", got, want)
		}
	})
	t.Run("SetDefault", func(t *testing.T) {
		must(t, s.SetDefault(c.Digest))
		if got, err := s.Get(""); err != nil || got.Digest != c.Digest {
			t.Errorf("Get(\"\") = %v, %v after SetDefault; want %s", got, err, c.Digest)
		}
		for _, bad := range []string{"", c.Digest[:10], strings.Repeat("0", 64), "../" + c.Digest[3:]} {
			if err := s.SetDefault(bad); err == nil {
				t.Errorf("SetDefault(%q) = nil", bad)
			}
		}
		if def, _ := s.Default(); def != c.Digest {
			t.Errorf("a failed SetDefault changed the default to %s", def)
		}
		// With neither same-named bundle the default, the tag says which
		// one the name means: b, the later import.
		name := "debian-" + testRelease
		if tag, err := s.Tag(name); err != nil || tag != b.Digest {
			t.Fatalf("Tag(%s) = %q, %v; want the later import %s", name, tag, err, b.Digest)
		}
		if got, err := s.Get(name); err != nil || got.Digest != b.Digest {
			t.Errorf("Get(shared name) = %v, %v; want the tagged %s", got, err, b.Digest)
		}
		must(t, s.SetTag(name, a.Digest))
		if got, err := s.Get(name); err != nil || got.Digest != a.Digest {
			t.Errorf("Get(shared name) after SetTag(a) = %v, %v; want %s", got, err, a.Digest)
		}
		for _, bad := range []struct{ name, digest string }{
			{"hull-tuned", a.Digest}, // a is not named hull-tuned
			{name, c.Digest[:10]},
			{name, strings.Repeat("0", 64)},
		} {
			if err := s.SetTag(bad.name, bad.digest); err == nil {
				t.Errorf("SetTag(%q, %q) = nil", bad.name, bad.digest)
			}
		}
		// No tag: the default among them; neither the default: ambiguous.
		must(t, os.Remove(filepath.Join(s.Dir, "tags", name)))
		if _, err := s.Get(name); !errors.Is(err, ErrAmbiguous) || !strings.Contains(err.Error(), a.Digest[:12]) {
			t.Errorf("Get(shared name, untagged) = %v, want ErrAmbiguous listing the digests", err)
		}
		must(t, s.SetDefault(b.Digest))
		if got, err := s.Get(name); err != nil || got.Digest != b.Digest {
			t.Errorf("Get(shared name, untagged) = %v, %v; want the default %s", got, err, b.Digest)
		}
		// A tag that is not a digest is an error only where it matters.
		must(t, os.WriteFile(filepath.Join(s.Dir, "tags", name), []byte("garbage\n"), 0o644))
		if _, err := s.Get(name); err == nil || !strings.Contains(err.Error(), "not a kernel digest") {
			t.Errorf("Get(shared name, garbage tag) = %v, want the tag named as broken", err)
		}
		must(t, s.SetTag(name, a.Digest))
		must(t, s.SetDefault(c.Digest))
	})
	t.Run("tagged bundle damaged", func(t *testing.T) {
		// The name means a; a breaks: the answer is a's error, not b.
		name := "debian-" + testRelease
		data, err := os.ReadFile(filepath.Join(a.Dir, "bundle.json"))
		must(t, err)
		flipByte(t, filepath.Join(a.Dir, "bundle.json"))
		if got, err := s.Get(name); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), a.Digest) {
			t.Errorf("Get(name tagged to a damaged bundle) = %v, %v; want ErrCorrupt naming %s", got, err, a.Digest)
		}
		must(t, os.WriteFile(filepath.Join(a.Dir, "bundle.json"), data, 0o644))
	})
	t.Run("corrupt bundle", func(t *testing.T) {
		flipByte(t, filepath.Join(b.Dir, "bundle.json"))
		if _, err := s.List(); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), b.Digest) {
			t.Errorf("List() err = %v, want ErrCorrupt naming %s", err, b.Digest)
		}
		if _, err := s.Get(b.Digest[:8]); !errors.Is(err, ErrCorrupt) {
			t.Errorf("Get(corrupt prefix) err = %v, want ErrCorrupt", err)
		}
		if got, err := s.Get("hull-tuned"); err != nil || got.Digest != c.Digest {
			t.Errorf("Get(healthy) = %v, %v", got, err)
		}
	})
	t.Run("default removed", func(t *testing.T) {
		must(t, os.RemoveAll(c.Dir))
		if _, err := s.Get(""); !errors.Is(err, ErrNotFound) {
			t.Errorf("Get(\"\") err = %v, want ErrNotFound", err)
		}
	})
}

// resolve is tested on made-up digests: real ones never share 6 digits.
func TestResolveAmbiguousPrefix(t *testing.T) {
	d := func(prefix string) string { return prefix + strings.Repeat("0", 64-len(prefix)) }
	bundles := []*Bundle{{Name: "a", Digest: d("abcdef1")}, {Name: "b", Digest: d("abcdef2")}, {Name: "c", Digest: d("123456")}}
	broken := map[string]error{d("fedcba"): errors.New("broken")}
	tests := []struct {
		ref  string
		want string
		err  error
	}{
		{"abcdef", "", ErrAmbiguous},
		{"abcdef1", "a", nil},
		{"ABCDEF2", "b", nil},
		{"123456", "c", nil},
		{"12345", "", ErrNotFound},
		{"fedcba", "", nil}, // the broken bundle's own error
		{"c", "c", nil},
	}
	for _, tt := range tests {
		t.Run(tt.ref, func(t *testing.T) {
			got, err := resolve(bundles, broken, tt.ref, "/store", "", nil)
			switch {
			case tt.err != nil:
				if !errors.Is(err, tt.err) {
					t.Errorf("resolve(%q) err = %v, want %v", tt.ref, err, tt.err)
				}
			case tt.want == "":
				if err == nil || err.Error() != "broken" {
					t.Errorf("resolve(%q) err = %v, want the bundle's own", tt.ref, err)
				}
			case err != nil || got.Name != tt.want:
				t.Errorf("resolve(%q) = %v, %v; want %s", tt.ref, got, err, tt.want)
			}
		})
	}
}

func TestAdd(t *testing.T) {
	s := newStore(t)
	bz := writeTemp(t, "bzImage", fakeBzImage("tuned bzImage"))
	elfKernel := writeTemp(t, "vmlinux", fakeVmlinux("tuned vmlinux"))
	arm := fakeVmlinux("arm64 vmlinux")
	binary.LittleEndian.PutUint16(arm[18:], uint16(elf.EM_AARCH64)) // e_machine
	forged := append([]byte("MZ"), make([]byte, minBzImage)...)
	copy(forged[bzHeaderMag:], "HdrS") // but no boot flag
	config := writeTemp(t, ".config", []byte(testConfig))
	tests := []struct {
		name, kname, release, kernel, config string
		wantFile                             string
		err                                  string
	}{
		{"bzImage with config", "hull-tuned", "6.1.99-hull", bz, config, "vmlinuz", ""},
		{"ELF kernel", "hull-pvh", "6.1.99-hull", elfKernel, "", "vmlinux.zst", ""},
		{"empty name", "", "6.1", bz, "", "", "empty kernel name"},
		{"name with slash", "a/b", "6.1", bz, "", "", "use letters, digits"},
		{"hex name", "abcdef12", "6.1", bz, "", "", "looks like a digest"},
		{"bad release", "x", "6.1 hull", bz, "", "", "bad kernel release"},
		{"missing kernel", "x", "6.1", filepath.Join(t.TempDir(), "nope"), "", "", "no such file"},
		{"empty kernel", "x", "6.1", writeTemp(t, "empty", nil), "", "", "not a kernel image"},
		{"text file", "x", "6.1", writeTemp(t, "notes", []byte("hi")), "", "", "notes is 2 bytes, too small for an x86 kernel"},
		{"forged boot header", "x", "6.1", writeTemp(t, "forged", forged), "", "", `forged is not an x86 kernel (bzImage): no "HdrS"`},
		{"ELF object", "x", "6.1", writeTemp(t, "x.ko", elfModule("x=y\x00")), "", "", "x.ko is an ELF ET_REL, not an executable kernel"},
		{"ELF for arm64", "x", "6.1", writeTemp(t, "Image", arm), "", "", "Image is an ELF file for ELFCLASS64 EM_AARCH64, not x86-64"},
		{"damaged ELF", "x", "6.1", writeTemp(t, "vmlinux", []byte("\x7fELF not really")), "", "", "is a damaged ELF file"},
		{"missing config", "x", "6.1", bz, filepath.Join(t.TempDir(), "nope"), "", "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := storeEntries(t, s)
			b, err := s.Add(context.Background(), tt.kname, tt.release, tt.kernel, tt.config)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("Add() err = %v, want one containing %q", err, tt.err)
				}
				if got := storeEntries(t, s); !slices.Equal(got, before) {
					t.Errorf("store went from %v to %v on a failed Add", before, got)
				}
				return
			}
			must(t, err)
			if !b.Builtin || len(b.Modules) != 0 || b.Modules == nil || b.Kernel != tt.wantFile || b.Release != tt.release || b.Name != tt.kname {
				t.Errorf("Add() = %+v", b)
			}
			if (tt.config != "") != (b.Config == "config") {
				t.Errorf("Config = %q with config path %q", b.Config, tt.config)
			}
			must(t, b.Verify())
			got, err := s.Get(tt.kname)
			must(t, err)
			if got.Digest != b.Digest || got.KernelPath() != filepath.Join(s.Dir, b.Digest, tt.wantFile) {
				t.Errorf("Get(%q) = %+v", tt.kname, got)
			}
			data, err := os.ReadFile(got.KernelPath())
			must(t, err)
			if sum := sha256.Sum256(data); hex.EncodeToString(sum[:]) != b.KernelSHA256 {
				t.Error("stored kernel does not hash to kernel_sha256")
			}
			want, _ := os.ReadFile(tt.kernel)
			if sum := sha256.Sum256(want); hex.EncodeToString(sum[:]) != b.SourceSHA256 {
				t.Errorf("source_sha256 = %s, not the hash of what was added", b.SourceSHA256)
			}
			// What QEMU is given is the kernel that was added, byte for byte.
			boot, err := got.BootKernel(t.TempDir())
			must(t, err)
			booted, err := os.ReadFile(boot)
			must(t, err)
			if string(booted) != string(want) {
				t.Error("the kernel handed to QEMU differs from the source")
			}
		})
	}
	def, err := s.Default()
	must(t, err)
	if first, _ := s.Get("hull-tuned"); def != first.Digest {
		t.Errorf("default = %s, want the first bundle added", def)
	}
}

func TestConfigValue(t *testing.T) {
	s := newStore(t)
	b, err := s.ImportDeb(context.Background(), defaultSpec().write(t), []string{})
	must(t, err)
	noConfig := defaultSpec()
	noConfig.noConfig = true
	nb, err := newStore(t).ImportDeb(context.Background(), noConfig.write(t), []string{})
	must(t, err)
	tests := []struct {
		b      *Bundle
		option string
		want   string
		has    bool
	}{
		{b, "CONFIG_VIRTIO_MMIO", "m", true},
		{b, "VIRTIO_MMIO", "m", true},
		{b, "CONFIG_64BIT", "y", true},
		{b, "CONFIG_LOCALVERSION", "-cloud", false},
		{b, "CONFIG_NR_CPUS", "8192", false},
		{b, "CONFIG_VIRTIO_MEM", "", false},
		{b, "CONFIG_VIRTIO", "m", true},
		{b, "CONFIG_VIRT", "", false},
		{b, "CONFIG_MISSING", "", false},
		{nb, "CONFIG_VIRTIO_MMIO", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.option, func(t *testing.T) {
			if got := tt.b.ConfigValue(tt.option); got != tt.want {
				t.Errorf("ConfigValue(%q) = %q, want %q", tt.option, got, tt.want)
			}
			if got := tt.b.HasConfig(tt.option); got != tt.has {
				t.Errorf("HasConfig(%q) = %v, want %v", tt.option, got, tt.has)
			}
		})
	}
	if nb.Config != "" || nb.ConfigSHA256 != "" {
		t.Errorf("bundle without config has Config %q", nb.Config)
	}
}

func sorted(s ...string) []string {
	slices.Sort(s)
	return s
}
