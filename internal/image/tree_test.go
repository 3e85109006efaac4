package image_test

import (
	"errors"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/hullvm/hull/internal/image"
)

// writeHostFile creates a file under dir with content and mode.
func writeHostFile(t *testing.T, dir, name, content string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil { // WriteFile's mode is subject to umask
		t.Fatal(err)
	}
	return p
}

func mustAdd(t *testing.T, tr *image.Tree, e image.Entry) {
	t.Helper()
	if err := tr.Add(e); err != nil {
		t.Fatalf("Add(%s): %v", e.Path, err)
	}
}

func lookup(t *testing.T, tr *image.Tree, p string) *image.Entry {
	t.Helper()
	e, ok := tr.Lookup(p)
	if !ok {
		t.Fatalf("Lookup(%s): not in the tree", p)
	}
	return e
}

func paths(tr *image.Tree) []string {
	var out []string
	for _, e := range tr.Entries() {
		out = append(out, e.Path)
	}
	return out
}

func TestAddCreatesParents(t *testing.T) {
	tr := image.NewTree()
	mustAdd(t, tr, image.Entry{Path: "/usr/share/doc/x", Type: image.File, Perm: 0o644, Data: []byte("x"), Reason: "test", Origin: image.Closure})
	if got, want := paths(tr), []string{"/", "/usr", "/usr/share", "/usr/share/doc", "/usr/share/doc/x"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("Entries = %q, want %q (sorted, parents first)", got, want)
	}
	for _, p := range []string{"/usr", "/usr/share", "/usr/share/doc"} {
		e := lookup(t, tr, p)
		if e.Type != image.Dir || e.Perm != 0o755 || e.Origin != image.Implied {
			t.Errorf("%s = type %v perm %o origin %d, want dir 755 Implied", p, e.Type, e.Perm, e.Origin)
		}
	}
}

func TestAddRejectsRelativePath(t *testing.T) {
	tr := image.NewTree()
	if err := tr.Add(image.Entry{Path: "etc/passwd", Type: image.File, Data: []byte("x")}); err == nil {
		t.Errorf("Add(relative path) = nil, want an error")
	}
}

func TestAddNormalisesPerms(t *testing.T) {
	tests := []struct {
		name string
		typ  image.Type
		perm uint32
		want uint32
	}{
		{"private file becomes readable", image.File, 0o600, 0o644},
		{"owner-only program runs for the app user", image.File, 0o700, 0o755},
		{"group-only execute", image.File, 0o750, 0o755},
		{"setuid dropped", image.File, 0o4755, 0o755},
		{"setgid dropped", image.File, 0o2711, 0o755},
		{"sticky dropped", image.File, 0o1644, 0o644},
		{"world-writable dropped", image.File, 0o666, 0o644},
		{"no bits at all", image.File, 0, 0o444},
		{"dir gets x", image.Dir, 0o600, 0o755},
		{"sticky world-writable dir", image.Dir, 0o1777, 0o755},
		{"dir with nothing", image.Dir, 0, 0o555},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := image.NewTree()
			mustAdd(t, tr, image.Entry{Path: "/x", Type: tt.typ, Perm: tt.perm, Data: []byte("d"), Reason: "test", Origin: image.User})
			if got := lookup(t, tr, "/x").Perm; got != tt.want {
				t.Errorf("Perm after Add(%o) = %o, want %o", tt.perm, got, tt.want)
			}
		})
	}
}

// TestUserOverridesGenerated is C12: the user's /etc/hosts wins over the
// generated one whichever is added first, and the tree records what was
// replaced.
func TestUserOverridesGenerated(t *testing.T) {
	host := writeHostFile(t, t.TempDir(), "hosts", "10.1.1.1 db\n", 0o644)
	gen := image.Entry{Path: "/etc/hosts", Type: image.File, Perm: 0o444, Data: []byte("127.0.0.1 localhost\n"), Reason: "generated: hosts", Origin: image.Generated}
	user := image.Entry{Path: "/etc/hosts", Type: image.File, Perm: 0o644, Src: host, Reason: "declared: files[0]", Origin: image.User}
	for _, order := range []struct {
		name  string
		first image.Entry
		then  image.Entry
	}{{"generated first", gen, user}, {"user first", user, gen}} {
		t.Run(order.name, func(t *testing.T) {
			tr := image.NewTree()
			mustAdd(t, tr, order.first)
			mustAdd(t, tr, order.then)
			e := lookup(t, tr, "/etc/hosts")
			if e.Origin != image.User || e.Src != host || e.Reason != "declared: files[0]" {
				t.Errorf("/etc/hosts = origin %d src %q reason %q, want the user's file", e.Origin, e.Src, e.Reason)
			}
			if e.Overrides != "generated: hosts" {
				t.Errorf("Overrides = %q, want %q", e.Overrides, "generated: hosts")
			}
		})
	}
}

func TestAddConflicts(t *testing.T) {
	dir := t.TempDir()
	a := writeHostFile(t, dir, "a", "a", 0o644)
	b := writeHostFile(t, dir, "b", "b", 0o644)
	tests := []struct {
		name    string
		entries []image.Entry
		wantErr bool
	}{
		{"same origin, different source", []image.Entry{
			{Path: "/lib/x.so", Type: image.File, Perm: 0o644, Src: a, Reason: "one", Origin: image.Closure},
			{Path: "/lib/x.so", Type: image.File, Perm: 0o644, Src: b, Reason: "two", Origin: image.Closure},
		}, true},
		{"same origin, same source", []image.Entry{
			{Path: "/lib/x.so", Type: image.File, Perm: 0o644, Src: a, Reason: "one", Origin: image.Closure},
			{Path: "/lib/x.so", Type: image.File, Perm: 0o644, Src: a, Reason: "two", Origin: image.Closure},
		}, false},
		{"same origin, different link targets", []image.Entry{
			{Path: "/lib/x.so", Type: image.Symlink, Link: "x.so.1", Reason: "one", Origin: image.Closure},
			{Path: "/lib/x.so", Type: image.Symlink, Link: "x.so.2", Reason: "two", Origin: image.Closure},
		}, true},
		{"same origin, same link target", []image.Entry{
			{Path: "/lib/x.so", Type: image.Symlink, Link: "x.so.1", Reason: "one", Origin: image.Closure},
			{Path: "/lib/x.so", Type: image.Symlink, Link: "x.so.1", Reason: "two", Origin: image.Closure},
		}, false},
		{"same origin, file and symlink", []image.Entry{
			{Path: "/x", Type: image.File, Src: a, Reason: "one", Origin: image.User},
			{Path: "/x", Type: image.Symlink, Link: "y", Reason: "two", Origin: image.User},
		}, true},
		{"file under a file", []image.Entry{
			{Path: "/etc/passwd", Type: image.File, Src: a, Reason: "one", Origin: image.Generated},
			{Path: "/etc/passwd/x", Type: image.File, Src: b, Reason: "two", Origin: image.User},
		}, true},
		{"higher origin file over a populated dir", []image.Entry{
			{Path: "/srv/index.html", Type: image.File, Src: a, Reason: "one", Origin: image.Closure},
			{Path: "/srv", Type: image.File, Src: b, Reason: "two", Origin: image.User},
		}, true},
		{"two dirs merge", []image.Entry{
			{Path: "/srv", Type: image.Dir, Reason: "one", Origin: image.User},
			{Path: "/srv", Type: image.Dir, Reason: "two", Origin: image.User},
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := image.NewTree()
			var err error
			for _, e := range tt.entries {
				if err = tr.Add(e); err != nil {
					break
				}
			}
			if tt.wantErr && !errors.Is(err, image.ErrConflict) {
				t.Errorf("Add error = %v, want one wrapping ErrConflict", err)
			}
			if !tt.wantErr && err != nil {
				t.Errorf("Add error = %v, want nil", err)
			}
		})
	}
}

func TestAddThroughSymlinkedParent(t *testing.T) {
	tests := []struct {
		name  string
		links map[string]string // added in sorted order of path
		add   string
		want  string
	}{
		{"relative merged-usr link", map[string]string{"/lib": "usr/lib"}, "/lib/x/y", "/usr/lib/x/y"},
		{"absolute link", map[string]string{"/lib64": "/usr/lib64"}, "/lib64/ld-linux-x86-64.so.2", "/usr/lib64/ld-linux-x86-64.so.2"},
		{"link with dotdot", map[string]string{"/opt/app/lib": "../../usr/lib/app"}, "/opt/app/lib/libx.so", "/usr/lib/app/libx.so"},
		{"chain of links", map[string]string{"/a": "b", "/b": "c"}, "/a/f", "/c/f"},
		{"link in the middle", map[string]string{"/usr/lib/jvm": "java-17"}, "/usr/lib/jvm/bin/java", "/usr/lib/java-17/bin/java"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := image.NewTree()
			for _, p := range sortedKeys(tt.links) {
				mustAdd(t, tr, image.Entry{Path: p, Type: image.Symlink, Link: tt.links[p], Reason: "link", Origin: image.Closure})
			}
			mustAdd(t, tr, image.Entry{Path: tt.add, Type: image.File, Perm: 0o644, Data: []byte("y"), Reason: "file", Origin: image.Closure})
			e := lookup(t, tr, tt.add)
			if e.Path != tt.want {
				t.Errorf("Lookup(%s).Path = %s, want %s", tt.add, e.Path, tt.want)
			}
			for _, p := range paths(tr) {
				for link := range tt.links {
					if strings.HasPrefix(p, link+"/") {
						t.Errorf("entry %s lies beneath symlink %s: stored paths must be physical", p, link)
					}
				}
			}
		})
	}
}

func TestAddSymlinkLoop(t *testing.T) {
	tr := image.NewTree()
	mustAdd(t, tr, image.Entry{Path: "/l1", Type: image.Symlink, Link: "l2", Origin: image.Closure})
	mustAdd(t, tr, image.Entry{Path: "/l2", Type: image.Symlink, Link: "l1", Origin: image.Closure})
	if err := tr.Add(image.Entry{Path: "/l1/f", Type: image.File, Data: []byte("x"), Origin: image.Closure}); err == nil {
		t.Errorf("Add through a symlink loop = nil, want an error")
	}
}

func TestAddHostTree(t *testing.T) {
	src := t.TempDir()
	writeHostFile(t, src, "conf/app.conf", "key=value\n", 0o600)
	writeHostFile(t, src, "bin/tool", "#!x\n", 0o700)
	if err := os.Symlink("conf/app.conf", filepath.Join(src, "current")); err != nil {
		t.Fatal(err)
	}
	tr := image.NewTree()
	if err := tr.AddHostTree(src, "/srv", "declared: dirs[0]", image.User); err != nil {
		t.Fatalf("AddHostTree: %v", err)
	}
	want := map[string]struct {
		typ  image.Type
		perm uint32
		link string
		src  string
	}{
		"/srv":               {image.Dir, 0o755, "", ""},
		"/srv/bin":           {image.Dir, 0o755, "", ""},
		"/srv/bin/tool":      {image.File, 0o755, "", filepath.Join(src, "bin/tool")},
		"/srv/conf":          {image.Dir, 0o755, "", ""},
		"/srv/conf/app.conf": {image.File, 0o644, "", filepath.Join(src, "conf/app.conf")},
		"/srv/current":       {image.Symlink, 0, "conf/app.conf", ""},
	}
	for p, w := range want {
		e := lookup(t, tr, p)
		if e.Type != w.typ || e.Link != w.link || e.Src != w.src || (w.typ != image.Symlink && e.Perm != w.perm) {
			t.Errorf("%s = {%v %o link %q src %q}, want {%v %o link %q src %q}", p, e.Type, e.Perm, e.Link, e.Src, w.typ, w.perm, w.link, w.src)
		}
		if e.Origin != image.User || e.Reason != "declared: dirs[0]" {
			t.Errorf("%s origin/reason = %d/%q, want User/%q", p, e.Origin, e.Reason, "declared: dirs[0]")
		}
	}
	if got, want := len(tr.Entries()), len(want)+1; got != want {
		t.Errorf("tree has %d entries %q, want %d", got, paths(tr), want)
	}
}

func TestAddHostTreeRefusesFIFO(t *testing.T) {
	src := t.TempDir()
	writeHostFile(t, src, "ok", "fine", 0o644)
	fifo := filepath.Join(src, "pipe")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatalf("mkfifo: %v", err)
	}
	tr := image.NewTree()
	err := tr.AddHostTree(src, "/data", "declared", image.User)
	if err == nil {
		t.Fatal("AddHostTree with a FIFO = nil, want an error")
	}
	if !strings.Contains(err.Error(), fifo) || !strings.Contains(err.Error(), "named pipe") {
		t.Errorf("error = %q, want it to name %s as a named pipe", err, fifo)
	}
}

func TestAddHostTreeMissing(t *testing.T) {
	tr := image.NewTree()
	err := tr.AddHostTree(filepath.Join(t.TempDir(), "nope"), "/x", "declared", image.User)
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("AddHostTree(missing) = %v, want os.ErrNotExist", err)
	}
}

func sortedKeys(m map[string]string) []string {
	return slices.Sorted(maps.Keys(m))
}
