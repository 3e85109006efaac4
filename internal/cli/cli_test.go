package cli

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// run invokes the CLI in-process against a private store.
func run(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	t.Setenv("HULL_HOME", t.TempDir())
	t.Setenv("HULL_INIT", "/proc/self/exe")
	var out, errb bytes.Buffer
	code := Main(context.Background(), args, Env{Stdout: &out, Stderr: &errb})
	return out.String(), errb.String(), code
}

func TestRuntimeEnv(t *testing.T) {
	t.Setenv("FROM_HOST", "h=v w")
	tests := []struct {
		in      []string
		want    []string
		wantErr string
	}{
		{[]string{"URL=a=b", "SP=x y", "U=ünï", "E="}, []string{"URL=a=b", "SP=x y", "U=ünï", "E="}, ""},
		{[]string{"FROM_HOST"}, []string{"FROM_HOST=h=v w"}, ""},
		{[]string{"NOT_SET_ANYWHERE_42"}, nil, "NOT_SET_ANYWHERE_42"},
		{[]string{"1BAD=x"}, nil, "1BAD"},
		{[]string{"A-B=x"}, nil, "A-B"},
	}
	for _, tt := range tests {
		got, err := runtimeEnv(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("runtimeEnv(%q) = %v, %v; want an error naming %s", tt.in, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || strings.Join(got, "\x00") != strings.Join(tt.want, "\x00") {
			t.Errorf("runtimeEnv(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

// Errors are one line, prefixed "hull:", with a non-zero exit and no
// usage dump.
func TestErrorsAreOneLine(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "tool.sh")
	os.WriteFile(script, []byte("#!/bin/sh\necho hi\n"), 0o755)
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"run"}, "say what to run"},
		{[]string{"run", "no-such-image"}, "no image named"},
		{[]string{"run", "x", "-p", "80:x"}, "80:x"},
		{[]string{"run", "x", "-e", "9=x"}, "9"},
		{[]string{"build", "a", "b"}, "put the program's own arguments after --"},
		{[]string{"build", script}, "script"},
		{[]string{"build", "/proc/self/exe"}, "hull kernel import"},
		{[]string{"inspect", "nope"}, "nope"},
		{[]string{"kernel", "import", filepath.Join(dir, "missing.deb")}, "missing.deb"},
		{[]string{"bogus-command"}, "unknown command"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			out, errs, code := run(t, tt.args...)
			if code == 0 {
				t.Fatalf("exit 0; stdout %q", out)
			}
			msg := strings.TrimSpace(errs)
			if strings.Count(msg, "\n") != 0 || !strings.HasPrefix(msg, "hull: ") {
				t.Errorf("stderr = %q, want one line starting with \"hull: \"", errs)
			}
			if !strings.Contains(strings.ToLower(msg), strings.ToLower(tt.want)) {
				t.Errorf("stderr = %q, want it to mention %q", msg, tt.want)
			}
		})
	}
}

func TestImagesEmptyStoreJSON(t *testing.T) {
	out, errs, code := run(t, "images", "--json")
	if code != 0 || strings.TrimSpace(out) != "[]" {
		t.Errorf("images --json on an empty store = %q (stderr %q, exit %d), want []", out, errs, code)
	}
}

// --kernel-arg passes boot diagnostics, one word each, and nothing that
// replaces the init or root, reroutes the console or weakens security.
func TestCheckKernelArgs(t *testing.T) {
	for _, ok := range [][]string{nil, {"initcall_debug"}, {"loglevel=8", "printk.time=1", "tsc=reliable"}} {
		if err := checkKernelArgs(ok); err != nil {
			t.Errorf("checkKernelArgs(%q) = %v, want nil", ok, err)
		}
	}
	for _, bad := range [][]string{
		{"rdinit=/x"}, {"init=/bin/sh"}, {"root=/dev/vda"}, {"lsm=yama"}, {"landlock=0"}, {"LSM=yama"},
		{"console=hvc0"}, {"panic=0"}, {"sysctl.vm.mmap_min_addr=0"}, {"hull.verbose=1"}, {"mitigations=off"},
		{"quiet init=/x"}, {""}, {"a\tb"}, {"--"}, {strings.Repeat("x", 1100)},
	} {
		if err := checkKernelArgs(bad); err == nil {
			t.Errorf("checkKernelArgs(%q) = nil, want a refusal", bad)
		}
	}
}

// hull's own failures in run exit 125, the app's statuses pass through.
func TestRunFailuresExit125(t *testing.T) {
	if err := asHullError(nil); err != nil {
		t.Errorf("asHullError(nil) = %v", err)
	}
	var ee *exitError
	if err := asHullError(errors.New("no image named x")); !errors.As(err, &ee) || ee.code != exitHullError {
		t.Errorf("asHullError(plain) = %v, want exit %d", err, exitHullError)
	}
	app := &exitError{code: 3}
	if err := asHullError(app); err != app {
		t.Errorf("asHullError(app status) = %v, want it unchanged", err)
	}
}
