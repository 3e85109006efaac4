package builder_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hullvm/hull/internal/builder"
	"github.com/hullvm/hull/internal/elfdeps"
	"github.com/hullvm/hull/internal/image"
	"github.com/hullvm/hull/internal/kernel"
	"github.com/hullvm/hull/internal/manifest"
	"github.com/hullvm/hull/internal/spec"
)

const hostCABundle = "/etc/ssl/certs/ca-certificates.crt"

func TestPlanDynamicC(t *testing.T) {
	prog := helloProgram(t)
	p := plan(t, options(t, &spec.Spec{Program: prog}))

	// The program moves under /app; nothing keeps its build path.
	if got, want := p.Manifest.Program, "/app/hello"; got != want {
		t.Errorf("manifest Program = %s, want %s", got, want)
	}
	if e := entry(t, p.Tree, "/app/hello"); e.Type != image.File || e.Src != prog || e.Origin != image.Closure {
		t.Errorf("/app/hello = %+v, want the host program as a closure file", e)
	}
	for _, e := range p.Tree.Entries() {
		if strings.HasPrefix(e.Path, filepath.Dir(prog)) || strings.HasPrefix(e.Path, "/tmp/") {
			t.Errorf("entry %s keeps the build path; want it under /app", e.Path)
		}
	}

	// glibc and its loader, at the paths the program names.
	if libc := withBase(p.Tree, "libc.so.6"); len(libc) != 1 {
		t.Fatalf("libc.so.6 entries = %q, want one", libc)
	}
	if p.Closure.Libc != "glibc" {
		t.Fatalf("Closure.Libc = %q, want glibc (host toolchain)", p.Closure.Libc)
	}
	if ld := withBase(p.Tree, "ld-linux-x86-64.so.2"); len(ld) == 0 {
		t.Errorf("no ld-linux-x86-64.so.2 in the image")
	}
	if interp := resolve(t, p.Tree, p.Closure.Interp); interp.Type != image.File || filepath.Base(interp.Src) != "ld-linux-x86-64.so.2" {
		t.Errorf("PT_INTERP %s resolves to %+v, want the loader file", p.Closure.Interp, interp)
	}
	if libc := resolve(t, p.Tree, withBase(p.Tree, "libc.so.6")[0]); libc.Type != image.File {
		t.Errorf("libc.so.6 resolves to a %v, want a file", libc.Type)
	}
	// A merged-/usr host gives /lib64 -> usr/lib64; the image keeps it.
	if fi, err := os.Lstat("/lib64"); err == nil && fi.Mode()&os.ModeSymlink != 0 {
		target, _ := os.Readlink("/lib64")
		if e := entry(t, p.Tree, "/lib64"); e.Type != image.Symlink || e.Link != target {
			t.Errorf("/lib64 = %v -> %q, want a symlink to %q as on the host", e.Type, e.Link, target)
		}
	} else {
		t.Logf("host /lib64 is not a symlink (%v): merged-/usr link check not applicable", err)
	}

	passwd := string(entry(t, p.Tree, "/etc/passwd").Data)
	fields := strings.Split(strings.TrimSuffix(passwd, "\n"), ":")
	if len(fields) != 7 || fields[0] != manifest.AppUser || fields[1] != "*" || fields[2] != "1000" || fields[3] != "1000" || fields[6] != "/nonexistent" {
		t.Errorf("/etc/passwd = %q, want app:*:1000:1000:…:/nonexistent (no password, no shell)", passwd)
	}
	if strings.Contains(passwd, "root") {
		t.Errorf("/etc/passwd = %q, want only the app user", passwd)
	}
	if e, ok := p.Tree.Lookup("/etc/nsswitch.conf"); !ok || !strings.Contains(string(e.Data), "hosts: files dns") {
		t.Errorf("/etc/nsswitch.conf = %+v (present %v), want glibc's name service config", e, ok)
	}
	hosts := string(entry(t, p.Tree, "/etc/hosts").Data)
	for _, want := range []string{"127.0.0.1\tlocalhost", manifest.GuestIP + "\thello", manifest.GatewayIP + "\t" + manifest.HostAlias} {
		if !strings.Contains(hosts, want) {
			t.Errorf("/etc/hosts = %q, want a line %q", hosts, want)
		}
	}
	for _, mp := range []string{"/proc", "/dev", "/tmp", manifest.AppHome} {
		if e := entry(t, p.Tree, mp); e.Type != image.Dir {
			t.Errorf("%s is a %v, want a directory", mp, e.Type)
		}
	}

	m := p.Manifest
	if m.User.UID != manifest.AppUID || m.NoFile != manifest.DefaultNoFile || m.Kernel.Release != "6.1.0-test" || m.Name != "hello" {
		t.Errorf("manifest = user %+v nofile %d kernel %+v name %s, want uid 1000, nofile %d, the bundle's kernel, name hello",
			m.User, m.NoFile, m.Kernel, m.Name, manifest.DefaultNoFile)
	}
	if len(p.Modules) != 0 {
		t.Errorf("Modules = %+v, want none for a kernel with built-in drivers", p.Modules)
	}
}

func TestPlanCACerts(t *testing.T) {
	if _, err := os.Stat(hostCABundle); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("no CA bundle at %s (CI=true, so this is a failure): %v", hostCABundle, err)
		}
		t.Skipf("no CA bundle at %s (install ca-certificates): %v", hostCABundle, err)
	}
	prog := helloProgram(t)
	off := false
	tests := []struct {
		name    string
		caCerts *bool
		want    bool
	}{
		{"default", nil, true},
		{"ca_certs false", &off, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := plan(t, options(t, &spec.Spec{Program: prog, CACerts: tt.caCerts}))
			e, ok := p.Tree.Lookup(hostCABundle)
			if ok != tt.want {
				t.Fatalf("%s present = %v, want %v", hostCABundle, ok, tt.want)
			}
			if ok && (e.Type != image.File || e.Src != hostCABundle) {
				t.Errorf("%s = %+v, want a copy of the host bundle", hostCABundle, e)
			}
			if _, ok := p.Tree.Lookup("/etc/ssl/cert.pem"); ok != tt.want {
				t.Errorf("/etc/ssl/cert.pem present = %v, want %v", ok, tt.want)
			}
		})
	}
}

func TestPlanTimezone(t *testing.T) {
	const zone = "/usr/share/zoneinfo/Europe/Paris"
	if _, err := os.Stat(zone); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s missing (CI=true, so this is a failure): %v", zone, err)
		}
		t.Skipf("%s missing (install tzdata): %v", zone, err)
	}
	prog := helloProgram(t)
	p := plan(t, options(t, &spec.Spec{Program: prog, Env: spec.EnvList{"TZ=Europe/Paris"}}))
	if e := entry(t, p.Tree, zone); e.Type != image.File {
		t.Errorf("%s is a %v, want a file", zone, e.Type)
	}
	if e := entry(t, p.Tree, "/etc/localtime"); e.Type != image.Symlink || e.Link != zone {
		t.Errorf("/etc/localtime = %v -> %q, want a symlink to %s", e.Type, e.Link, zone)
	}
	if !slices.Contains(p.Manifest.Env, "TZ=Europe/Paris") {
		t.Errorf("manifest Env = %q, want TZ=Europe/Paris", p.Manifest.Env)
	}

	// A POSIX TZ string needs no file; an unknown zone name is an error.
	p = plan(t, options(t, &spec.Spec{Program: prog, Env: spec.EnvList{"TZ=UTC0"}}))
	if _, ok := p.Tree.Lookup("/etc/localtime"); ok {
		t.Errorf("TZ=UTC0 added /etc/localtime, want no zone file")
	}
	if _, err := builder.Plan(options(t, &spec.Spec{Program: prog, Env: spec.EnvList{"TZ=Mars/Olympus_Mons"}})); err == nil || !strings.Contains(err.Error(), "Mars/Olympus_Mons") {
		t.Errorf("Plan with TZ=Mars/Olympus_Mons = %v, want an error naming the zone", err)
	}
}

func TestPlanStaticGo(t *testing.T) {
	prog := goProgram(t)
	p := plan(t, options(t, &spec.Spec{Program: prog}))
	if !p.Closure.Static {
		t.Errorf("Closure.Static = false, want true for a CGO_ENABLED=0 Go program")
	}
	if got, want := p.Manifest.Program, "/app/gohello"; got != want {
		t.Errorf("manifest Program = %s, want %s", got, want)
	}
	if _, ok := p.Tree.Lookup("/etc/nsswitch.conf"); ok {
		t.Errorf("static Go program got /etc/nsswitch.conf, want none (no glibc)")
	}
	for _, lib := range []string{"libc.so.6", "ld-linux-x86-64.so.2", "libnss_files.so.2"} {
		if got := withBase(p.Tree, lib); len(got) != 0 {
			t.Errorf("static Go program got %q, want no %s", got, lib)
		}
	}
	// The generated basics are there all the same.
	for _, f := range []string{"/etc/passwd", "/etc/hosts", "/etc/resolv.conf"} {
		entry(t, p.Tree, f)
	}
}

func TestPlanUserFiles(t *testing.T) {
	prog := helloProgram(t)
	dir := tempDir(t)
	hosts := writeFile(t, filepath.Join(dir, "hosts"), "10.9.9.9 db\n", 0o644)
	conf := writeFile(t, filepath.Join(dir, "app.conf"), "k=v\n", 0o600)
	static := filepath.Join(dir, "static")
	writeFile(t, filepath.Join(static, "index.html"), "<h1>hi</h1>", 0o644)

	t.Run("user /etc/hosts overrides the generated one", func(t *testing.T) {
		p := plan(t, options(t, &spec.Spec{Program: prog, Files: []spec.Mount{{Host: hosts, Guest: "/etc/hosts"}}}))
		e := entry(t, p.Tree, "/etc/hosts")
		if e.Origin != image.User || e.Src != hosts {
			t.Errorf("/etc/hosts = origin %d src %q, want the user's file %s", e.Origin, e.Src, hosts)
		}
		if !strings.HasPrefix(e.Overrides, "generated: hosts") {
			t.Errorf("/etc/hosts Overrides = %q, want the generated entry's reason", e.Overrides)
		}
	})
	t.Run("files and dirs land where declared", func(t *testing.T) {
		p := plan(t, options(t, &spec.Spec{Program: prog, Cwd: "/srv",
			Files: []spec.Mount{{Host: conf, Guest: "/etc/app.conf"}},
			Dirs:  []spec.Mount{{Host: static, Guest: "/srv/www"}}}))
		if e := entry(t, p.Tree, "/etc/app.conf"); e.Src != conf || e.Perm != 0o644 || !strings.Contains(e.Reason, "files[0]") {
			t.Errorf("/etc/app.conf = %+v, want %s readable by the app, reason naming files[0]", e, conf)
		}
		if e := entry(t, p.Tree, "/srv/www/index.html"); !strings.Contains(e.Reason, "dirs[0]") {
			t.Errorf("/srv/www/index.html reason = %q, want it to name dirs[0]", e.Reason)
		}
	})
	refusals := []struct {
		name string
		s    spec.Spec
		want string
	}{
		{"file under /tmp", spec.Spec{Files: []spec.Mount{{Host: conf, Guest: "/tmp/app.conf"}}}, "/tmp"},
		{"dir under /proc", spec.Spec{Dirs: []spec.Mount{{Host: static, Guest: "/proc/www"}}}, "/proc"},
		{"file replacing /dev", spec.Spec{Files: []spec.Mount{{Host: conf, Guest: "/dev"}}}, "/dev"},
		{"directory given as a file", spec.Spec{Files: []spec.Mount{{Host: static, Guest: "/srv"}}}, "dirs:"},
		{"file given as a dir", spec.Spec{Dirs: []spec.Mount{{Host: conf, Guest: "/srv"}}}, "not a directory"},
		{"missing host file", spec.Spec{Files: []spec.Mount{{Host: filepath.Join(dir, "nope"), Guest: "/x"}}}, "nope"},
		{"cwd is a file", spec.Spec{Cwd: "/etc/passwd"}, "cwd"},
	}
	for _, tt := range refusals {
		t.Run(tt.name, func(t *testing.T) {
			s := tt.s
			s.Program = prog
			_, err := builder.Plan(options(t, &s))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Plan = %v, want an error mentioning %q", err, tt.want)
			}
		})
	}
}

// TestPlanKeepsOriginLayout: a program that finds its library through
// $ORIGIN/../lib keeps that layout under /app.
func TestPlanKeepsOriginLayout(t *testing.T) {
	root := tempDir(t)
	lib := gcc(t, filepath.Join(root, "lib", "libx.so"), "int x(void){return 42;}\n", "-shared", "-fPIC")
	prog := gcc(t, filepath.Join(root, "bin", "prog"), "int x(void);\nint main(void){return x()-42;}\n",
		"-L"+filepath.Dir(lib), "-lx", "-Wl,-rpath,$ORIGIN/../lib")
	p := plan(t, options(t, &spec.Spec{Program: prog}))
	if got, want := p.Manifest.Program, "/app/bin/prog"; got != want {
		t.Errorf("manifest Program = %s, want %s", got, want)
	}
	if e := entry(t, p.Tree, "/app/bin/prog"); e.Src != prog {
		t.Errorf("/app/bin/prog src = %s, want %s", e.Src, prog)
	}
	if e := entry(t, p.Tree, "/app/lib/libx.so"); e.Src != lib {
		t.Errorf("/app/lib/libx.so src = %s, want %s", e.Src, lib)
	}
}

func TestPlanRejects(t *testing.T) {
	dir := tempDir(t)
	script := writeFile(t, filepath.Join(dir, "run.sh"), "#!/bin/sh\necho hi\n", 0o755)
	_, err := builder.Plan(options(t, &spec.Spec{Program: script}))
	var notELF *elfdeps.NotELFError
	if !errors.As(err, &notELF) {
		t.Fatalf("Plan(script) = %v, want an *elfdeps.NotELFError", err)
	}
	if notELF.Shebang != "/bin/sh" {
		t.Errorf("NotELFError.Shebang = %q, want /bin/sh", notELF.Shebang)
	}

	prog := helloProgram(t)
	o := options(t, &spec.Spec{Program: prog})
	o.Kernel = nil
	if _, err := builder.Plan(o); err == nil {
		t.Errorf("Plan without a kernel bundle = nil error, want one")
	}
	o = options(t, &spec.Spec{Program: prog})
	o.Init = filepath.Join(dir, "no-init")
	if _, err := builder.Plan(o); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Plan with a missing init = %v, want os.ErrNotExist", err)
	}
}

// TestBuildReproducible builds the same spec into two fresh stores and
// twice into one: every build must give the same digest.
func TestBuildReproducible(t *testing.T) {
	prog := helloProgram(t)
	hosts := writeFile(t, filepath.Join(tempDir(t), "hosts"), "10.9.9.9 db\n", 0o644)
	newSpec := func() *spec.Spec {
		return &spec.Spec{Name: "hello", Program: prog, Env: spec.EnvList{"A=1"}, Files: []spec.Mount{{Host: hosts, Guest: "/etc/hosts"}}}
	}
	o := options(t, newSpec())
	build := func(store *image.Store, o builder.Options) *builder.Result {
		t.Helper()
		o.Store = store
		res, err := builder.Build(context.Background(), o)
		if err != nil {
			t.Fatalf("Build: %v", err)
		}
		return res
	}
	storeA := &image.Store{Dir: filepath.Join(tempDir(t), "a")}
	storeB := &image.Store{Dir: filepath.Join(tempDir(t), "b")}
	first := build(storeA, o)
	again := build(storeA, o)
	other := options(t, newSpec())
	other.Init = o.Init
	elsewhere := build(storeB, other)
	if first.Ref.Digest != again.Ref.Digest || first.Ref.Digest != elsewhere.Ref.Digest {
		t.Errorf("digests %s, %s, %s; want one digest for one input", first.Ref.Digest, again.Ref.Digest, elsewhere.Ref.Digest)
	}
	if err := storeA.Verify(first.Ref); err != nil {
		t.Errorf("Verify: %v", err)
	}
	if first.Ref.Kernel != o.Kernel.Digest || first.Ref.Codec != "zstd" || first.Ref.Name != "hello" {
		t.Errorf("Ref = %+v, want kernel %s, codec zstd, name hello", first.Ref, o.Kernel.Digest)
	}
	var rec *manifest.File
	for i, f := range first.Manifest.Files {
		if f.Path == "/etc/hosts" {
			rec = &first.Manifest.Files[i]
		}
	}
	if rec == nil || !strings.HasPrefix(rec.Overrides, "generated: hosts") || rec.SHA256 == "" {
		t.Errorf("manifest /etc/hosts record = %+v, want the user's file with Overrides and a digest", rec)
	}
	stored, err := storeA.Manifest(first.Ref)
	if err != nil || stored.Program != "/app/hello" {
		t.Errorf("stored manifest = %+v, %v; want program /app/hello", stored, err)
	}
}

func TestBuildCancelled(t *testing.T) {
	o := options(t, &spec.Spec{Program: helloProgram(t)})
	o.Store = &image.Store{Dir: filepath.Join(tempDir(t), "store")}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := builder.Build(ctx, o); !errors.Is(err, context.Canceled) {
		t.Errorf("Build with a cancelled context = %v, want context.Canceled", err)
	}
	if refs, _ := o.Store.List(); len(refs) != 0 {
		t.Errorf("store holds %d images after a cancelled build, want none", len(refs))
	}
}

// A stored kernel bundle that no longer matches its digests does not
// seed an image: its files would be copied in as they are.
func TestPlanRefusesCorruptStoredKernel(t *testing.T) {
	prog := goProgram(t)
	store := &kernel.Store{Dir: filepath.Join(tempDir(t), "kernels")}
	b, err := store.AddBuilt(context.Background(), kernel.Built{Name: "k", Release: "6.1.0-test", Kernel: prog})
	if err != nil {
		t.Fatal(err)
	}
	o := options(t, &spec.Spec{Program: prog})
	o.Kernel, o.Kernels = nil, store
	if _, err := builder.Plan(o); err != nil {
		t.Fatalf("Plan with an intact bundle: %v", err)
	}
	f, err := os.OpenFile(b.KernelPath(), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte{0})
	f.Close()
	if _, err := builder.Plan(o); !errors.Is(err, kernel.ErrCorrupt) {
		t.Fatalf("Plan with a tampered bundle = %v, want ErrCorrupt", err)
	}
}
