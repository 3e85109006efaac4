package initramfs_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/hullvm/hull/internal/initramfs"
)

// member is one archive entry as a test writes and expects it back.
type member struct {
	name string
	kind string // "dir", "file", "symlink"
	perm uint32
	data string // file content or link target
}

// writeArchive writes members in order and returns the archive bytes.
func writeArchive(t *testing.T, members []member) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := initramfs.NewWriter(&buf)
	for _, m := range members {
		var err error
		switch m.kind {
		case "dir":
			err = w.Dir(m.name, m.perm)
		case "file":
			err = w.File(m.name, m.perm, int64(len(m.data)), strings.NewReader(m.data))
		case "symlink":
			err = w.Symlink(m.name, m.data)
		default:
			t.Fatalf("bad member kind %q", m.kind)
		}
		if err != nil {
			t.Fatalf("writing %s %s: %v", m.kind, m.name, err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	return buf.Bytes()
}

// readArchive reads every entry with its content.
func readArchive(t *testing.T, archive []byte) []member {
	t.Helper()
	r := initramfs.NewReader(bytes.NewReader(archive))
	var out []member
	for {
		e, err := r.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("Next after %d entries: %v", len(out), err)
		}
		m := member{name: e.Name, perm: e.Perm()}
		switch {
		case e.IsDir():
			m.kind = "dir"
			if e.Size != 0 {
				t.Errorf("%s: dir Size = %d, want 0", e.Name, e.Size)
			}
		case e.IsRegular():
			m.kind = "file"
			data, err := io.ReadAll(r)
			if err != nil {
				t.Fatalf("reading %s: %v", e.Name, err)
			}
			if int64(len(data)) != e.Size {
				t.Errorf("%s: read %d bytes, header Size %d", e.Name, len(data), e.Size)
			}
			m.data = string(data)
		case e.IsSymlink():
			m.kind = "symlink"
			if e.Perm() != 0o777 {
				t.Errorf("%s: symlink perm = %o, want 777", e.Name, e.Perm())
			}
			if int64(len(e.Link)) != e.Size {
				t.Errorf("%s: link %q, header Size %d", e.Name, e.Link, e.Size)
			}
			m.data = e.Link
			m.perm = 0
		default:
			t.Fatalf("%s: unexpected mode %o", e.Name, e.Mode)
		}
		out = append(out, m)
	}
}

func TestRoundTrip(t *testing.T) {
	in := []member{
		{name: "/etc", kind: "dir", perm: 0o755},
		{name: "/etc/hosts", kind: "file", perm: 0o644, data: "127.0.0.1 localhost\n"},
		{name: "etc/empty", kind: "file", perm: 0o400},
		{name: "tmp", kind: "dir", perm: 0o1777},
		{name: "usr/bin/su", kind: "file", perm: 0o4755, data: "\x7fELF..."},
		{name: "bin", kind: "symlink", data: "usr/bin"},
		{name: "etc/localtime", kind: "symlink", data: "/usr/share/zoneinfo/Europe/Paris"},
		{name: "bin/ünïcode name with spaces", kind: "file", perm: 0o700, data: strings.Repeat("x", 70000)},
	}
	got := readArchive(t, writeArchive(t, in))
	want := make([]member, len(in))
	for i, m := range in {
		m.name = strings.TrimPrefix(m.name, "/")
		if m.kind == "symlink" {
			m.perm = 0
		}
		want[i] = m
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("read back\n%+v\nwant\n%+v", got, want)
	}
}

// TestPadding covers every alignment case of newc: the 110-byte header
// plus name plus NUL, and the data, are each padded to 4 bytes.
func TestPadding(t *testing.T) {
	for nameLen := 1; nameLen <= 8; nameLen++ {
		for size := 0; size <= 9; size++ {
			t.Run(fmt.Sprintf("name%d/size%d", nameLen, size), func(t *testing.T) {
				data := strings.Repeat("d", size)
				in := []member{
					{name: strings.Repeat("f", nameLen), kind: "file", perm: 0o644, data: data},
					{name: strings.Repeat("l", nameLen), kind: "symlink", data: "t" + data},
					{name: strings.Repeat("e", nameLen), kind: "dir", perm: 0o755},
					{name: "after", kind: "file", perm: 0o600, data: "end"},
				}
				archive := writeArchive(t, in)
				if len(archive)%4 != 0 {
					t.Errorf("archive length %d, want a multiple of 4", len(archive))
				}
				got := readArchive(t, archive)
				in[1].perm = 0
				if !reflect.DeepEqual(got, in) {
					t.Errorf("read back\n%+v\nwant\n%+v", got, in)
				}
			})
		}
	}
}

// TestReaderSkipsUnreadData checks that Next finds the following header
// when the caller read only part of an entry, or none of it.
func TestReaderSkipsUnreadData(t *testing.T) {
	archive := writeArchive(t, []member{
		{name: "a", kind: "file", perm: 0o644, data: "0123456789"},
		{name: "b", kind: "file", perm: 0o644, data: "abc"},
		{name: "c", kind: "file", perm: 0o644, data: "last"},
	})
	r := initramfs.NewReader(bytes.NewReader(archive))
	if _, err := r.Next(); err != nil {
		t.Fatal(err)
	}
	one := make([]byte, 3)
	if _, err := io.ReadFull(r, one); err != nil || string(one) != "012" {
		t.Fatalf("partial read = %q, %v; want \"012\"", one, err)
	}
	var names []string
	for {
		e, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("Next: %v", err)
		}
		names = append(names, e.Name)
		if e.Name == "c" {
			b, _ := io.ReadAll(r)
			if string(b) != "last" {
				t.Errorf("content of c = %q, want \"last\"", b)
			}
		}
	}
	if want := []string{"b", "c"}; !reflect.DeepEqual(names, want) {
		t.Errorf("names after partial read = %q, want %q", names, want)
	}
}

func TestReaderRejects(t *testing.T) {
	good := writeArchive(t, []member{{name: "file", kind: "file", perm: 0o644, data: "hello world"}})
	tests := []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"bad magic", append([]byte("070707"), good[6:]...)},
		{"truncated header", good[:50]},
		{"truncated name", good[:112]},
		{"truncated data", good[:120]},
		{"bad hex field", append(append([]byte{}, good[:6]...), append([]byte("zzzzzzzz"), good[14:]...)...)},
		{"no trailer", good[:len(good)-124]},
		{"truncated at a header boundary", writeArchive(t, []member{{name: "a", kind: "dir", perm: 0o755}})[:112]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := initramfs.NewReader(bytes.NewReader(tt.data))
			var err error
			for i := 0; i < 10 && err == nil; i++ {
				if _, err = r.Next(); err == nil {
					_, err = io.Copy(io.Discard, r)
				}
			}
			// Only the trailer ends an archive; a caller stopping at
			// errors.Is(err, io.EOF) must not take truncation for the end.
			if err == nil || errors.Is(err, io.EOF) {
				t.Errorf("reading %s archive: err = %v, want an error that is not io.EOF", tt.name, err)
			}
		})
	}
}

func TestWriterErrors(t *testing.T) {
	tests := []struct {
		name  string
		write func(w *initramfs.Writer) error
	}{
		{"short reader", func(w *initramfs.Writer) error {
			return w.File("f", 0o644, 10, strings.NewReader("abc"))
		}},
		{"failing reader", func(w *initramfs.Writer) error {
			return w.File("f", 0o644, 10, iotest.ErrReader(errors.New("disk on fire")))
		}},
		{"empty name", func(w *initramfs.Writer) error { return w.Dir("", 0o755) }},
		{"root name", func(w *initramfs.Writer) error { return w.Dir("/", 0o755) }},
		{"NUL in name", func(w *initramfs.Writer) error { return w.Symlink("a\x00b", "t") }},
		{"negative size", func(w *initramfs.Writer) error { return w.File("f", 0o644, -1, strings.NewReader("")) }},
		{"size above 32 bits", func(w *initramfs.Writer) error {
			return w.File("f", 0o644, 1<<32, strings.NewReader(""))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := initramfs.NewWriter(io.Discard)
			if err := tt.write(w); err == nil {
				t.Errorf("write = nil, want an error")
			}
		})
	}

	// A failed File poisons the writer: Close must not produce an
	// archive that looks complete.
	t.Run("error is sticky", func(t *testing.T) {
		var buf bytes.Buffer
		w := initramfs.NewWriter(&buf)
		if err := w.File("f", 0o644, 10, strings.NewReader("abc")); err == nil {
			t.Fatal("File with short reader = nil, want an error")
		}
		if err := w.Dir("d", 0o755); err == nil {
			t.Errorf("Dir after failure = nil, want the earlier error")
		}
		if err := w.Close(); err == nil {
			t.Errorf("Close after failure = nil, want the earlier error")
		}
	})
}

func TestParseCodec(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want initramfs.Codec
		ok   bool
	}{
		{"zstd", initramfs.Zstd, true}, {"gzip", initramfs.Gzip, true}, {"none", initramfs.None, true},
		{"", "", false}, {"xz", "", false}, {"ZSTD", "", false},
	} {
		got, err := initramfs.ParseCodec(tt.in)
		if got != tt.want || (err == nil) != tt.ok {
			t.Errorf("ParseCodec(%q) = %q, %v; want %q, ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func compress(t *testing.T, c initramfs.Codec, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := initramfs.Compress(&buf, c)
	if err != nil {
		t.Fatalf("Compress(%s): %v", c, err)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatalf("Compress(%s) write: %v", c, err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("Compress(%s) close: %v", c, err)
	}
	return buf.Bytes()
}

func TestCompressRoundTrip(t *testing.T) {
	// A realistic archive, with incompressible-looking data in it too.
	noise := make([]byte, 300<<10)
	x := uint32(1)
	for i := range noise {
		x = x*1664525 + 1013904223
		noise[i] = byte(x >> 24)
	}
	archive := writeArchive(t, []member{
		{name: "app", kind: "dir", perm: 0o755},
		{name: "app/text", kind: "file", perm: 0o644, data: strings.Repeat("hull ", 20000)},
		{name: "app/noise", kind: "file", perm: 0o644, data: string(noise)},
	})
	for _, c := range []initramfs.Codec{initramfs.Zstd, initramfs.Gzip, initramfs.None} {
		t.Run(string(c), func(t *testing.T) {
			first := compress(t, c, archive)
			if second := compress(t, c, archive); !bytes.Equal(first, second) {
				t.Errorf("two compressions of the same input differ (%d vs %d bytes): output must be deterministic", len(first), len(second))
			}
			rc, got, err := initramfs.Decompress(bytes.NewReader(first))
			if err != nil {
				t.Fatalf("Decompress: %v", err)
			}
			t.Cleanup(func() { rc.Close() })
			if got != c {
				t.Errorf("Decompress detected codec %q, want %q", got, c)
			}
			plain, err := io.ReadAll(rc)
			if err != nil {
				t.Fatalf("reading decompressed: %v", err)
			}
			if !bytes.Equal(plain, archive) {
				t.Errorf("decompressed %d bytes differ from the %d-byte archive", len(plain), len(archive))
			}
			if c == initramfs.None && !bytes.Equal(first, archive) {
				t.Errorf("codec none changed the bytes")
			}
			if c != initramfs.None && len(first) >= len(archive) {
				t.Errorf("%s output %d bytes, not smaller than the %d-byte input", c, len(first), len(archive))
			}
		})
	}
}

// TestGzipHeaderCarriesNoTimestamp: a timestamp or a file name in the
// gzip header would make two builds of the same image differ.
func TestGzipHeaderCarriesNoTimestamp(t *testing.T) {
	out := compress(t, initramfs.Gzip, []byte("070701 data"))
	if len(out) < 10 {
		t.Fatalf("gzip output %d bytes, want a header", len(out))
	}
	if flg := out[3]; flg&0x08 != 0 {
		t.Errorf("gzip FLG = %#x: FNAME set, want no name", flg)
	}
	if mtime := out[4:8]; !bytes.Equal(mtime, []byte{0, 0, 0, 0}) {
		t.Errorf("gzip MTIME = % x, want zero", mtime)
	}
}

func TestCompressUnknownCodec(t *testing.T) {
	if _, err := initramfs.Compress(io.Discard, "lz4"); err == nil {
		t.Errorf("Compress(lz4) = nil error, want an error")
	}
	w, err := initramfs.Compress(io.Discard, "")
	if err != nil {
		t.Fatalf("Compress(\"\") = %v, want the none codec", err)
	}
	w.Close()
}

func TestDecompressRejects(t *testing.T) {
	tests := []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"one byte", []byte{0x1f}},
		{"text", []byte("this is not an initramfs at all")},
		{"elf", []byte("\x7fELF\x02\x01\x01\x00")},
		{"gzip magic then garbage", []byte{0x1f, 0x8b, 0xff, 0xff, 0xff, 0xff}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc, c, err := initramfs.Decompress(bytes.NewReader(tt.data))
			if err == nil {
				rc.Close()
				t.Errorf("Decompress(%q) = codec %q, nil; want an error", tt.data, c)
			}
		})
	}
}

// TestCpioToolReadsArchive cross-checks the writer with GNU cpio: it must
// list the same names and extract the same contents and link targets.
func TestCpioToolReadsArchive(t *testing.T) {
	cpio, err := exec.LookPath("cpio")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("cpio not installed (CI=true, so this is a failure): %v", err)
		}
		t.Skipf("cpio not installed (apt-get install cpio): %v", err)
	}
	in := []member{
		{name: "etc", kind: "dir", perm: 0o755},
		{name: "etc/hosts", kind: "file", perm: 0o644, data: "127.0.0.1 localhost\n"},
		{name: "etc/e", kind: "file", perm: 0o600},
		{name: "usr", kind: "dir", perm: 0o755},
		{name: "usr/lib", kind: "dir", perm: 0o755},
		{name: "usr/lib/libx.so.1", kind: "file", perm: 0o755, data: "abcdefg"},
		{name: "usr/lib/libx.so", kind: "symlink", data: "libx.so.1"},
		{name: "lib", kind: "symlink", data: "usr/lib"},
	}
	archive := writeArchive(t, in)
	dir := t.TempDir()
	file := filepath.Join(dir, "archive.cpio")
	if err := os.WriteFile(file, archive, 0o644); err != nil {
		t.Fatal(err)
	}

	list := exec.Command(cpio, "-it", "--quiet", "-F", file)
	out, err := list.CombinedOutput()
	if err != nil {
		t.Fatalf("cpio -it: %v\n%s", err, out)
	}
	gotNames := strings.Fields(string(out))
	var wantNames []string
	for _, m := range in {
		wantNames = append(wantNames, m.name)
	}
	if !reflect.DeepEqual(gotNames, wantNames) {
		t.Errorf("cpio -it lists %q, want %q", gotNames, wantNames)
	}

	root := filepath.Join(dir, "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	extract := exec.Command(cpio, "-idm", "--quiet", "--no-absolute-filenames", "-F", file)
	extract.Dir = root
	if out, err := extract.CombinedOutput(); err != nil {
		t.Fatalf("cpio -idm: %v\n%s", err, out)
	}
	for _, m := range in {
		p := filepath.Join(root, m.name)
		st, err := os.Lstat(p)
		if err != nil {
			t.Errorf("extracted %s: %v", m.name, err)
			continue
		}
		switch m.kind {
		case "dir":
			if !st.IsDir() {
				t.Errorf("%s extracted as %v, want a directory", m.name, st.Mode())
			}
		case "file":
			b, err := os.ReadFile(p)
			if err != nil || string(b) != m.data {
				t.Errorf("%s content = %q, %v; want %q", m.name, b, err, m.data)
			}
			if got := uint32(st.Mode().Perm()); got != m.perm {
				t.Errorf("%s mode = %o, want %o", m.name, got, m.perm)
			}
		case "symlink":
			target, err := os.Readlink(p)
			if err != nil || target != m.data {
				t.Errorf("%s link = %q, %v; want %q", m.name, target, err, m.data)
			}
		}
	}
}
