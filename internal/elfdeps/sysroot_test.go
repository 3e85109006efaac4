package elfdeps

import (
	"bytes"
	"debug/elf"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
)

// fakeSysroot lays out a small Debian-like tree made of synthetic ELF files:
// merged-usr links (one absolute, one relative), the loader link Debian
// ships, ld.so.conf with relative, absolute, nested and looping includes, and
// a library reached through an absolute symlink that must be re-rooted.
// outside is a host directory outside the root holding decoys that must never
// be found through symlinks.
func fakeSysroot(t *testing.T) (root, outside string) {
	t.Helper()
	root, outside = tempDir(t), tempDir(t)
	const interp = "/lib64/ld-linux-x86-64.so.2"
	symlink(t, root, "lib64", "/usr/lib64")
	symlink(t, root, "lib", "usr/lib")
	symlink(t, root, "usr/lib64/ld-linux-x86-64.so.2", "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")
	writeFile(t, root, "usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2", fakeELF{soname: "ld-linux-x86-64.so.2"}.bytes(), 0o755)
	writeFile(t, root, "usr/lib/x86_64-linux-gnu/libc.so.6",
		fakeELF{soname: "libc.so.6", needed: []string{"ld-linux-x86-64.so.2"}}.bytes(), 0o755)

	writeFile(t, root, "etc/ld.so.conf", []byte("# system libraries\ninclude ld.so.conf.d/*.conf\n\n"), 0o644)
	writeFile(t, root, "etc/ld.so.conf.d/vendor.conf", []byte("/opt/vendor/lib/   # trailing comment\n"), 0o644)
	writeFile(t, root, "etc/ld.so.conf.d/zz-nested.conf", []byte("include /etc/more.d/*.conf\nhwcap 0 nosegneg\n"), 0o644)
	writeFile(t, root, "etc/ld.so.conf.d/.hidden.conf", []byte("/opt/hidden\n"), 0o644)
	writeFile(t, root, "etc/ld.so.conf.d/README", []byte("/opt/readme\n"), 0o644)
	writeFile(t, root, "etc/more.d/more.conf", []byte("/opt/more\ninclude /etc/ld.so.conf\n"), 0o644)

	symlink(t, root, "opt/vendor/lib/libvendor.so.1", "/usr/lib/vendor/libvendor.so.1.2")
	writeFile(t, root, "usr/lib/vendor/libvendor.so.1.2",
		fakeELF{soname: "libvendor.so.1", needed: []string{"libc.so.6"}, pthread: true}.bytes(), 0o644)
	writeFile(t, root, "opt/more/libmore.so.1", fakeELF{soname: "libmore.so.1"}.bytes(), 0o644)
	// Decoys: found only if .hidden.conf or a non-.conf file were read.
	writeFile(t, root, "opt/hidden/libmore.so.1", fakeELF{}.bytes(), 0o644)
	writeFile(t, root, "opt/readme/libmore.so.1", fakeELF{}.bytes(), 0o644)

	writeFile(t, root, "usr/bin/app",
		fakeELF{typ: elf.ET_DYN, interp: interp, needed: []string{"libvendor.so.1", "libmore.so.1", "libc.so.6"}}.bytes(), 0o755)

	// Escape attempts: the targets exist on the host, not in the root.
	writeFile(t, outside, "libescape.so", fakeELF{}.bytes(), 0o644)
	writeFile(t, outside, "libclimb.so", fakeELF{}.bytes(), 0o644)
	symlink(t, root, "opt/vendor/lib/libescape.so", filepath.Join(outside, "libescape.so"))
	symlink(t, root, "opt/vendor/lib/libclimb.so", strings.Repeat("../", 12)+strings.TrimPrefix(outside, "/")+"/libclimb.so")
	writeFile(t, root, "usr/bin/escape", fakeELF{needed: []string{"libescape.so"}}.bytes(), 0o755)
	writeFile(t, root, "usr/bin/climb", fakeELF{needed: []string{"libclimb.so"}}.bytes(), 0o755)
	writeFile(t, root, "usr/bin/abs-needed", fakeELF{needed: []string{filepath.Join(outside, "libescape.so")}}.bytes(), 0o755)
	return root, outside
}

func TestSysroot(t *testing.T) {
	root, _ := fakeSysroot(t)
	r := &Resolver{Root: root}
	c, err := r.Resolve("/usr/bin/app")
	if err != nil {
		t.Fatalf("Resolve: %v", err)
	}
	checkInvariants(t, r, c)
	type entry struct {
		Path string
		Kind Kind
		Link string
	}
	var got []entry
	for _, f := range c.Files {
		got = append(got, entry{f.Path, f.Kind, f.Link})
	}
	want := []entry{
		{"/lib", KindLink, "usr/lib"},
		{"/lib64", KindLink, "/usr/lib64"},
		{"/opt/more/libmore.so.1", KindLibrary, ""},
		{"/opt/vendor/lib/libvendor.so.1", KindLink, "/usr/lib/vendor/libvendor.so.1.2"},
		{"/usr/bin/app", KindProgram, ""},
		{"/usr/lib/vendor/libvendor.so.1.2", KindLibrary, ""},
		{"/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2", KindInterp, ""},
		{"/usr/lib/x86_64-linux-gnu/libc.so.6", KindLibrary, ""},
		{"/usr/lib64/ld-linux-x86-64.so.2", KindLink, "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("Files:\ngot  %v\nwant %v", got, want)
	}
	if c.Program != "/usr/bin/app" || c.Interp != "/lib64/ld-linux-x86-64.so.2" || c.Static ||
		c.Libc != "glibc" || !c.Threads || c.Machine != elf.EM_X86_64 {
		t.Errorf("closure header = %+v", *c)
	}
	wantReasons := map[string]string{
		"/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2": "program interpreter of /usr/bin/app (PT_INTERP)",
		"/usr/lib/vendor/libvendor.so.1.2":               "needed by /usr/bin/app (DT_NEEDED libvendor.so.1)",
		"/opt/vendor/lib/libvendor.so.1":                 "symlink to /usr/lib/vendor/libvendor.so.1.2 (on the way to libvendor.so.1)",
	}
	idx := fileIndex(t, c)
	for p, want := range wantReasons {
		if got := idx[p].Reason; got != want {
			t.Errorf("%s: Reason = %q, want %q", p, got, want)
		}
	}
}

// TestSysrootNoEscape proves that neither absolute symlink targets nor ".."
// climbing can reach host files outside Root.
func TestSysrootNoEscape(t *testing.T) {
	root, outside := fakeSysroot(t)
	tests := []struct {
		prog     string
		wantName string
	}{
		{"/usr/bin/escape", "libescape.so"},
		{"/usr/bin/climb", "libclimb.so"},
		{"/usr/bin/abs-needed", filepath.Join(outside, "libescape.so")},
	}
	r := &Resolver{Root: root}
	for _, tt := range tests {
		t.Run(filepath.Base(tt.prog), func(t *testing.T) {
			c, err := r.Resolve(tt.prog)
			var miss *MissingLibraryError
			if !errors.As(err, &miss) {
				t.Fatalf("Resolve = %+v, %v; want *MissingLibraryError (host file must stay unreachable)", c, err)
			}
			if miss.Name != tt.wantName || miss.NeededBy != tt.prog {
				t.Errorf("missing %q needed by %q, want %q by %q", miss.Name, miss.NeededBy, tt.wantName, tt.prog)
			}
		})
	}
}

func TestLdSoConf(t *testing.T) {
	root, _ := fakeSysroot(t)
	got := (&Resolver{Root: root}).readLdSoConf()
	want := []string{"/opt/vendor/lib", "/opt/more"}
	if !slices.Equal(got, want) {
		t.Errorf("readLdSoConf = %q, want %q", got, want)
	}
	if got := (&Resolver{Root: tempDir(t)}).readLdSoConf(); len(got) != 0 {
		t.Errorf("readLdSoConf without the file = %q, want none", got)
	}
}

func TestWalk(t *testing.T) {
	root, outside := tempDir(t), tempDir(t)
	writeFile(t, root, "b/f", []byte("x"), 0o644)
	writeFile(t, root, "b/sub/g", []byte("x"), 0o644)
	writeFile(t, outside, "hostfile", []byte("x"), 0o644)
	symlink(t, root, "abs", "/b")
	symlink(t, root, "rel", "b")
	symlink(t, root, "climb", "../../../../b")
	symlink(t, root, "sub", "b/sub")
	symlink(t, root, "host", filepath.Join(outside, "hostfile"))
	symlink(t, root, "dangling", "/nope")
	symlink(t, root, "loop1", "loop2")
	symlink(t, root, "loop2", "/loop1")
	// chain40/0 -> 1 -> ... -> 40 (a file): exactly the kernel's limit.
	for i := 0; i < 41; i++ {
		symlink(t, root, "chain/"+itoa(i), itoa(i+1))
	}
	writeFile(t, root, "chain/41", []byte("x"), 0o644)

	tests := []struct {
		name      string
		path      string
		wantPhys  string
		wantLinks []link
		wantErr   error
	}{
		{"plain", "/b/f", "/b/f", nil, nil},
		{"absolute-link-rerooted", "/abs/f", "/b/f", []link{{"/abs", "/b"}}, nil},
		{"relative-link", "/rel/f", "/b/f", []link{{"/rel", "b"}}, nil},
		{"dotdot-clamped-at-root", "/climb/f", "/b/f", []link{{"/climb", "../../../../b"}}, nil},
		{"dotdot-is-physical", "/sub/../f", "/b/f", []link{{"/sub", "b/sub"}}, nil},
		{"dotdot-above-root", "/../../b/./f", "/b/f", nil, nil},
		{"host-target-not-followed", "/host", "", nil, fs.ErrNotExist},
		{"dangling", "/dangling", "", nil, fs.ErrNotExist},
		{"not-a-directory", "/b/f/x", "", nil, syscall.ENOTDIR},
		{"loop", "/loop1", "", nil, syscall.ELOOP},
		{"forty-links-ok", "/chain/1", "/chain/41", nil, nil},
		{"forty-one-links-loop", "/chain/0", "", nil, syscall.ELOOP},
	}
	r := &Resolver{Root: root}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, err := r.walk(tt.path)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.path) {
					t.Fatalf("walk(%s) error = %v, want %v naming the path", tt.path, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("walk(%s): %v", tt.path, err)
			}
			if w.phys != tt.wantPhys {
				t.Errorf("phys = %s, want %s", w.phys, tt.wantPhys)
			}
			if tt.wantLinks != nil && !slices.Equal(w.links, tt.wantLinks) {
				t.Errorf("links = %v, want %v", w.links, tt.wantLinks)
			}
		})
	}
}

func itoa(i int) string {
	const digits = "0123456789"
	if i < 10 {
		return digits[i : i+1]
	}
	return itoa(i/10) + digits[i%10:i%10+1]
}

func TestExpandDST(t *testing.T) {
	a := abi{triplet: "x86_64-linux-gnu", platform: "x86_64"}
	tests := []struct {
		in, want string
	}{
		{"$ORIGIN/../lib", "/opt/app/bin/../lib"},
		{"${ORIGIN}/../lib", "/opt/app/bin/../lib"},
		{"$ORIGIN", "/opt/app/bin"},
		{"/usr/$LIB/foo", "/usr/lib/x86_64-linux-gnu/foo"},
		{"/opt/${PLATFORM}x", "/opt/x86_64x"},
		{"/opt/$PLATFORMx", "/opt/$PLATFORMx"}, // bare token must end at '/' or the end
		{"$ORIGIN:$ORIGIN/x", "/opt/app/bin:/opt/app/bin/x"},
		{"/a/$UNKNOWN/b", "/a/$UNKNOWN/b"},
		{"$", "$"},
		{"no tokens", "no tokens"},
	}
	for _, tt := range tests {
		if got := expandDST(tt.in, "/opt/app/bin", a); got != tt.want {
			t.Errorf("expandDST(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestNeededNameMatching covers ld.so's reuse of already-loaded objects: by
// SONAME (libc's "ld-linux-x86-64.so.2" is the interpreter) and by name
// containing '/', with $ORIGIN in DT_NEEDED.
func TestNeededNameMatching(t *testing.T) {
	root := tempDir(t)
	writeFile(t, root, "rtld/ld.so", fakeELF{soname: "ld-fake.so.1"}.bytes(), 0o755)
	writeFile(t, root, "app/lib/libdep.so", fakeELF{needed: []string{"ld-fake.so.1"}}.bytes(), 0o644)
	writeFile(t, root, "app/bin/prog", fakeELF{interp: "/rtld/ld.so", needed: []string{"$ORIGIN/../lib/libdep.so", "ld-fake.so.1"}}.bytes(), 0o755)
	r := &Resolver{Root: root}
	c, err := r.Resolve("/app/bin/prog")
	if err != nil {
		t.Fatalf("Resolve: %v", err)
	}
	checkInvariants(t, r, c)
	if got, want := pathsOf(c, KindLibrary), []string{"/app/lib/libdep.so"}; !slices.Equal(got, want) {
		t.Errorf("libraries = %v, want %v", got, want)
	}
	if got, want := pathsOf(c, KindInterp), []string{"/rtld/ld.so"}; !slices.Equal(got, want) {
		t.Errorf("interp = %v, want %v", got, want)
	}
}

// TestLibraryPathOrder checks LibraryPath entries (colon lists included) are
// searched in order, before the default directories.
func TestLibraryPathOrder(t *testing.T) {
	root := tempDir(t)
	writeFile(t, root, "one/libq.so", fakeELF{}.bytes(), 0o644)
	writeFile(t, root, "two/libq.so", fakeELF{}.bytes(), 0o644)
	writeFile(t, root, "usr/lib/libq.so", fakeELF{}.bytes(), 0o644)
	writeFile(t, root, "prog", fakeELF{needed: []string{"libq.so"}}.bytes(), 0o755)
	tests := []struct {
		libPath []string
		want    string
	}{
		{nil, "/usr/lib/libq.so"},
		{[]string{"/two", "/one"}, "/two/libq.so"},
		{[]string{"/nonexistent:/one"}, "/one/libq.so"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.libPath, ","), func(t *testing.T) {
			r := &Resolver{Root: root, LibraryPath: tt.libPath}
			c, err := r.Resolve("/prog")
			if err != nil {
				t.Fatalf("Resolve: %v", err)
			}
			if got := pathsOf(c, KindLibrary); !slices.Equal(got, []string{tt.want}) {
				t.Errorf("libraries = %v, want [%s]", got, tt.want)
			}
		})
	}
}

// TestMalformed feeds broken ELF files through Resolve: every prefix of a
// valid file and a few targeted corruptions. Errors are expected; panics and
// hangs are not.
func TestMalformed(t *testing.T) {
	good := fakeELF{interp: "/lib64/ld.so", needed: []string{"liba.so"}, rpath: "$ORIGIN", pthread: true}.bytes()
	root := tempDir(t)
	r := &Resolver{Root: root}
	for n := 0; n < len(good); n++ {
		writeFile(t, root, "prog", good[:n], 0o755)
		if _, err := r.Resolve("/prog"); err == nil {
			t.Errorf("prefix of %d bytes: Resolve succeeded", n)
		}
	}

	corrupt := func(name string, f func(b []byte)) struct {
		name string
		data []byte
	} {
		b := bytes.Clone(good)
		f(b)
		return struct {
			name string
			data []byte
		}{name, b}
	}
	dynOff := func(b []byte) int { // file offset of PT_DYNAMIC's first entry
		ef, err := elf.NewFile(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range ef.Progs {
			if p.Type == elf.PT_DYNAMIC {
				return int(p.Off)
			}
		}
		t.Fatal("no PT_DYNAMIC")
		return 0
	}
	tests := []struct {
		name string
		data []byte
	}{
		corrupt("needed-offset-out-of-range", func(b []byte) { b[dynOff(b)+8] = 0xff; b[dynOff(b)+9] = 0xff }),
		corrupt("huge-phnum", func(b []byte) { b[56], b[57] = 0xff, 0xff }),
		corrupt("huge-dynamic-size", func(b []byte) {
			ph := 64 + 56*2 // third program header: PT_DYNAMIC
			for i := 32; i < 40; i++ {
				b[ph+i] = 0x7f
			}
		}),
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			writeFile(t, root, "prog", tt.data, 0o755)
			_, err := r.Resolve("/prog")
			if err == nil {
				t.Fatal("Resolve succeeded, want an error")
			}
			t.Logf("error: %v", err)
			if !strings.Contains(err.Error(), "/prog") {
				t.Errorf("error %q does not name the file", err)
			}
		})
	}
}

func TestHostPath(t *testing.T) {
	tests := []struct {
		root, p, want string
	}{
		{"", "/usr/lib/x", "/usr/lib/x"},
		{"/", "/usr/lib/x", "/usr/lib/x"},
		{"/srv/root", "/usr/lib/x", "/srv/root/usr/lib/x"},
		{"/srv/root/", "/", "/srv/root"},
	}
	for _, tt := range tests {
		if got := (&Resolver{Root: tt.root}).HostPath(tt.p); got != tt.want {
			t.Errorf("Resolver{Root: %q}.HostPath(%q) = %q, want %q", tt.root, tt.p, got, tt.want)
		}
	}
}

func TestRelativeProgramPath(t *testing.T) {
	dir := tempDir(t)
	writeFile(t, dir, "prog", fakeELF{typ: elf.ET_EXEC, noDyn: true}.bytes(), 0o755)
	t.Chdir(dir)
	c, err := (&Resolver{}).Resolve("prog")
	if err != nil {
		t.Fatalf("Resolve: %v", err)
	}
	if want := filepath.Join(dir, "prog"); c.Program != want || !c.Static {
		t.Errorf("Program %s Static %v, want %s true", c.Program, c.Static, want)
	}
	if _, err := os.Stat(c.Program); err != nil {
		t.Error(err)
	}
}

// TestMusl checks musl's loader rules on an Alpine/Debian-musl-like tree: the
// loader answers for libc's reserved names, its own path file replaces
// ld.so.conf, and LD_LIBRARY_PATH and the run path come before it.
func TestMusl(t *testing.T) {
	root := tempDir(t)
	const interp = "/lib/ld-musl-x86_64.so.1"
	symlink(t, root, "lib/ld-musl-x86_64.so.1", "/usr/lib/x86_64-linux-musl/libc.so")
	writeFile(t, root, "usr/lib/x86_64-linux-musl/libc.so", fakeELF{soname: "libc.so"}.bytes(), 0o755)
	writeFile(t, root, "etc/ld-musl-x86_64.path", []byte("/opt/m/lib:/usr/lib\n/usr/local/lib\n"), 0o644)
	writeFile(t, root, "opt/m/lib/libz.so.1", fakeELF{needed: []string{"libpthread.so.0", "libextra.so"}}.bytes(), 0o644)
	writeFile(t, root, "usr/local/lib/libextra.so", fakeELF{}.bytes(), 0o644)
	// Decoys: ld.so.conf is glibc's and musl ignores it.
	writeFile(t, root, "etc/ld.so.conf", []byte("/decoy\n"), 0o644)
	writeFile(t, root, "decoy/libz.so.1", fakeELF{}.bytes(), 0o644)
	writeFile(t, root, "usr/bin/mprog", fakeELF{interp: interp, needed: []string{"libz.so.1", "libc.so", "libc.so.6"}, pthread: true}.bytes(), 0o755)

	r := &Resolver{Root: root}
	c, err := r.Resolve("/usr/bin/mprog")
	if err != nil {
		t.Fatalf("Resolve: %v", err)
	}
	checkInvariants(t, r, c)
	if c.Libc != "musl" || c.Interp != interp || c.Static || !c.Threads {
		t.Errorf("Libc, Interp, Static, Threads = %q, %q, %v, %v; want musl, %s, false, true", c.Libc, c.Interp, c.Static, c.Threads, interp)
	}
	if got, want := pathsOf(c, KindLibrary), []string{"/opt/m/lib/libz.so.1", "/usr/local/lib/libextra.so"}; !slices.Equal(got, want) {
		t.Errorf("libraries = %v, want %v", got, want)
	}
	if got, want := pathsOf(c, KindInterp), []string{"/usr/lib/x86_64-linux-musl/libc.so"}; !slices.Equal(got, want) {
		t.Errorf("interp = %v, want %v", got, want)
	}

	// Without the path file musl falls back to /lib:/usr/local/lib:/usr/lib,
	// and LibraryPath still comes first.
	if err := os.Remove(filepath.Join(root, "etc/ld-musl-x86_64.path")); err != nil {
		t.Fatal(err)
	}
	r.LibraryPath = []string{"/opt/m/lib"}
	c, err = r.Resolve("/usr/bin/mprog")
	if err != nil {
		t.Fatalf("Resolve without path file: %v", err)
	}
	if got, want := pathsOf(c, KindLibrary), []string{"/opt/m/lib/libz.so.1", "/usr/local/lib/libextra.so"}; !slices.Equal(got, want) {
		t.Errorf("libraries = %v, want %v", got, want)
	}
}

func TestMuslReserved(t *testing.T) {
	tests := []struct {
		name string
		want bool
	}{
		{"libc.so", true},
		{"libc.so.6", true},
		{"libpthread.so.0", true},
		{"libm.so.6", true},
		{"libcrypto.so.3", false},
		{"libz.so.1", false},
		{"/lib/libc.so", false},
		{"libc", false},
	}
	for _, tt := range tests {
		if got := muslReserved(tt.name); got != tt.want {
			t.Errorf("muslReserved(%q) = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// TestAddLibraryRollback checks a failed AddLibrary leaves no trace: a plugin
// found but missing its own dependency must not linger in later results.
func TestAddLibraryRollback(t *testing.T) {
	root := tempDir(t)
	writeFile(t, root, "usr/lib/libplugin.so", fakeELF{needed: []string{"libmissing.so"}}.bytes(), 0o644)
	writeFile(t, root, "usr/lib/libok.so", fakeELF{needed: []string{"libdep.so"}, pthread: true}.bytes(), 0o644)
	writeFile(t, root, "usr/lib/libdep.so", fakeELF{}.bytes(), 0o644)
	writeFile(t, root, "prog", fakeELF{}.bytes(), 0o755)
	r := &Resolver{Root: root}
	c, err := r.Resolve("/prog")
	if err != nil {
		t.Fatalf("Resolve: %v", err)
	}
	before := slices.Clone(c.Files)

	err = r.AddLibrary(c, "libplugin.so", "plugin")
	var miss *MissingLibraryError
	if !errors.As(err, &miss) || miss.Name != "libmissing.so" || miss.NeededBy != "/usr/lib/libplugin.so" {
		t.Fatalf("AddLibrary error = %v, want *MissingLibraryError for libmissing.so needed by /usr/lib/libplugin.so", err)
	}
	if errors.Is(err, ErrNotFound) {
		t.Errorf("error %v wraps ErrNotFound, but the plugin itself was found", err)
	}
	if !slices.Equal(c.Files, before) {
		t.Errorf("failed AddLibrary changed Files:\ngot  %v\nwant %v", c.Files, before)
	}

	if err := r.AddLibrary(c, "libok.so", "plugin"); err != nil {
		t.Fatalf("AddLibrary(libok.so): %v", err)
	}
	checkInvariants(t, r, c)
	if got, want := pathsOf(c, KindLibrary), []string{"/usr/lib/libdep.so", "/usr/lib/libok.so"}; !slices.Equal(got, want) {
		t.Errorf("libraries = %v, want %v", got, want)
	}
	if !c.Threads {
		t.Errorf("Threads = false after adding a library importing pthread_create")
	}
	if got := fileIndex(t, c)["/usr/lib/libdep.so"].Reason; got != "needed by /usr/lib/libok.so (DT_NEEDED libdep.so)" {
		t.Errorf("libdep.so reason = %q", got)
	}
}
