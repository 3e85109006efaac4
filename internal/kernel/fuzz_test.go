package kernel

import (
	"bytes"
	"io"
	"testing"
)

// FuzzArReader feeds arbitrary bytes to the ar reader: it must end with
// io.EOF or an error, never panic, loop or read more than it was given.
func FuzzArReader(f *testing.F) {
	f.Add(buildAr([]arMember{{"debian-binary", []byte("2.0\n")}, {"data.tar.gz", []byte("odd")}}))
	f.Add([]byte(arMagic + "#1/20           0           0     0     100644  25        `\nlong-name-member.tar\x00\x00\x00\x00x"))
	f.Add([]byte(arMagic))
	f.Fuzz(func(t *testing.T, data []byte) {
		ar, err := newArReader(bytes.NewReader(data))
		if err != nil {
			return
		}
		for i := 0; ; i++ {
			if i > len(data) {
				t.Fatal("more members than bytes")
			}
			h, err := ar.Next()
			if err != nil {
				return
			}
			if h.Size < 0 {
				t.Fatalf("negative size %d", h.Size)
			}
			n, err := io.Copy(io.Discard, ar)
			if n > int64(len(data)) {
				t.Fatalf("read %d bytes from %d", n, len(data))
			}
			if err != nil {
				return
			}
		}
	})
}

// FuzzModinfo feeds arbitrary bytes to the module parsers: they must not
// panic, and whatever they accept must be safe to use as file names.
func FuzzModinfo(f *testing.F) {
	f.Add(elfModule("license=GPL\x00depends=virtio,virtio_ring\x00name=virtio_mmio\x00vermagic=6.1.0 SMP\x00"))
	f.Add(elfModule("depends=\x00name=virtio-ring\x00"))
	f.Add([]byte("name=x\x00depends=a,,b-c\x00\x00\x00alias=y"))
	f.Fuzz(func(t *testing.T, data []byte) {
		check := func(mi modinfo, err error) {
			if err != nil {
				return
			}
			if mi.Name != "" && !validModuleName(mi.Name) {
				t.Fatalf("accepted name %q", mi.Name)
			}
			for _, d := range mi.Depends {
				if !validModuleName(d) {
					t.Fatalf("accepted dependency %q", d)
				}
			}
		}
		check(parseModinfo(data))
		check(parseModinfoData(data))
	})
}
