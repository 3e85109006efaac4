package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hullvm/hull/internal/dirs"
	"github.com/hullvm/hull/internal/kernel"
)

// runIn invokes the CLI in-process against the store under home.
func runIn(t *testing.T, home string, args ...string) (string, string, int) {
	t.Helper()
	t.Setenv("HULL_HOME", home)
	var out, errb bytes.Buffer
	code := Main(context.Background(), args, Env{Stdout: &out, Stderr: &errb})
	return out.String(), errb.String(), code
}

// bzImage writes the smallest file the store takes for an x86 kernel.
func bzImage(t *testing.T, tag string) string {
	t.Helper()
	img := make([]byte, 64<<10)
	img[0x1f1] = 4                      // setup sectors
	img[0x1fe], img[0x1ff] = 0x55, 0xaa // boot flag
	copy(img[0x202:], "HdrS")           // setup header magic
	copy(img[5*512:], tag)              // the "kernel"
	p := filepath.Join(t.TempDir(), "bzImage")
	if err := os.WriteFile(p, img, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// A damaged bundle is listed as corrupt; it does not hide the others.
func TestKernelLsShowsCorruptBundles(t *testing.T) {
	home := t.TempDir()
	store := &kernel.Store{Dir: dirs.Kernels(home)}
	good, err := store.AddBuilt(context.Background(), kernel.Built{Name: "good", Release: "6.1.0-test", Kernel: bzImage(t, "good")})
	if err != nil {
		t.Fatal(err)
	}
	bad, err := store.AddBuilt(context.Background(), kernel.Built{Name: "broken", Release: "6.1.0-test", Kernel: bzImage(t, "bad"), BuildKey: "k"})
	if err != nil {
		t.Fatal(err)
	}
	// An edit that keeps the JSON valid: the advice can still tell the
	// bundle was built, not imported.
	path := filepath.Join(bad.Dir, "bundle.json")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, bytes.Replace(data, []byte("6.1.0-test"), []byte("6.1.0-tesT"), 1), 0o644); err != nil {
		t.Fatal(err)
	}

	out, errs, code := runIn(t, home, "kernel", "ls")
	if code != 0 {
		t.Fatalf("kernel ls: exit %d, stderr %q", code, errs)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[1], "good ") || !strings.Contains(lines[1], good.Digest[:12]) ||
		!strings.HasPrefix(lines[2], "(corrupt) ") || !strings.Contains(lines[2], bad.Digest[:12]) {
		t.Errorf("kernel ls =\n%s\nwant a header, good, then bad marked corrupt", out)
	}
	if !strings.Contains(errs, bad.Digest) || !strings.Contains(errs, "hull kernel build --force") {
		t.Errorf("stderr = %q, want the damaged bundle named with how to rebuild it", errs)
	}

	out, errs, code = runIn(t, home, "kernel", "ls", "--json")
	if code != 0 {
		t.Fatalf("kernel ls --json: exit %d, stderr %q", code, errs)
	}
	var rows []struct {
		Name    string `json:"name"`
		Digest  string `json:"digest"`
		Corrupt bool   `json:"corrupt"`
		Reason  string `json:"reason"`
	}
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatalf("kernel ls --json: %v\n%s", err, out)
	}
	if len(rows) != 2 || rows[0].Digest != good.Digest || rows[0].Corrupt || rows[1].Digest != bad.Digest || !rows[1].Corrupt ||
		!strings.Contains(rows[1].Reason, "does not match") {
		t.Errorf("kernel ls --json rows = %+v, want good, then bad with corrupt and a reason", rows)
	}
}

// Flags that would only fail after the compile, or quietly change what is
// built, are refused before anything runs. Each case also gives a fragment
// the build would refuse at once, so a regression cannot start a real
// (minutes-long) build: it shows up as the wrong error instead.
func TestKernelBuildRefusesBadFlags(t *testing.T) {
	badFrag := filepath.Join(t.TempDir(), "frag.config")
	if err := os.WriteFile(badFrag, []byte("not a fragment\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	empty := t.TempDir()
	missing := filepath.Join(empty, "nope")
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--name", "my kernel"}, `--name: kernel name "my kernel"`},
		{[]string{"--name", "deadbeef"}, "looks like a digest"},
		{[]string{"-j", "-1"}, "--jobs -1"},
		{[]string{"--work-dir", ""}, "--work-dir is empty"},
		{[]string{"--patches", ""}, "--patches is empty"},
		{[]string{"--patches", missing}, missing},
		{[]string{"--patches", empty}, empty + " holds no *.patch files"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			args := append([]string{"kernel", "build", "--fragment", badFrag}, tt.args...)
			out, errs, code := runIn(t, t.TempDir(), args...)
			if code == 0 {
				t.Fatalf("exit 0; stdout %q", out)
			}
			msg := strings.TrimSpace(errs)
			if !strings.Contains(msg, tt.want) || strings.Count(msg, "\n") != 0 {
				t.Errorf("stderr = %q, want one line containing %q", errs, tt.want)
			}
		})
	}
}
