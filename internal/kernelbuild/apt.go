package kernelbuild

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
)

// hostSystem asks dpkg and apt on this machine.
type hostSystem struct{}

func (hostSystem) sourceVersion(ctx context.Context, pkg string) (installed, candidate string, err error) {
	if v, ok := dpkgInstalled(ctx, pkg); ok {
		return v, "", nil
	}
	out, err := exec.CommandContext(ctx, "apt-cache", "policy", pkg).Output()
	if err != nil {
		return "", "", fmt.Errorf("apt-cache policy %s: %w (is this Debian?)", pkg, err)
	}
	return "", parseCandidate(out), nil
}

// parseCandidate reads "Candidate: VERSION" from apt-cache policy output;
// "(none)" and no line at all give "".
func parseCandidate(out []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "Candidate:"); ok {
			v = strings.TrimSpace(v)
			if v == "(none)" {
				return ""
			}
			return v
		}
	}
	return ""
}

// dpkgInstalled returns the installed version of pkg.
func dpkgInstalled(ctx context.Context, pkg string) (string, bool) {
	out, err := exec.CommandContext(ctx, "dpkg-query", "-W", "-f=${db:Status-Abbrev}\t${Version}", pkg).Output()
	if err != nil {
		return "", false
	}
	status, version, _ := strings.Cut(string(out), "\t")
	if !strings.HasPrefix(status, "ii") || version == "" {
		return "", false
	}
	return version, true
}

func (hostSystem) missing(ctx context.Context, pkgs []string) ([]string, error) {
	var miss []string
	for _, p := range pkgs {
		if _, ok := dpkgInstalled(ctx, p); !ok {
			miss = append(miss, p)
		}
	}
	return miss, nil
}

// install runs apt-get install (through sudo -n when not root), turning
// apt's machine-readable status lines into progress events.
func (hostSystem) install(ctx context.Context, pkgs []string, progress func(Event)) error {
	args := []string{"install", "-y", "-q", "--no-install-recommends", "-o", "APT::Status-Fd=3"}
	args = append(args, pkgs...)
	name := "apt-get"
	if os.Geteuid() != 0 {
		if _, err := exec.LookPath("sudo"); err != nil {
			return fmt.Errorf("installing packages needs root: run apt-get install %s", strings.Join(pkgs, " "))
		}
		args = append([]string{"-n", "apt-get"}, args...)
		name = "sudo"
	}
	run := func(args ...string) error {
		cmd := exec.CommandContext(ctx, name, args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		pr, pw, err := os.Pipe()
		if err != nil {
			return err
		}
		cmd.ExtraFiles = []*os.File{pw} // fd 3
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			pr.Close()
			pw.Close()
			return err
		}
		pw.Close()
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			if e, ok := parseAptStatus(sc.Text()); ok && progress != nil {
				progress(e)
			}
		}
		pr.Close()
		if err := cmd.Wait(); err != nil {
			return fmt.Errorf("%v: %s", err, lastLines(out.String(), 5))
		}
		return nil
	}
	if err := run(args...); err != nil {
		// A stale package list is the usual cause: refresh once and retry.
		upd := []string{"update", "-q"}
		if name == "sudo" {
			upd = append([]string{"-n", "apt-get"}, upd...)
		}
		if progress != nil {
			progress(Event{Stage: "apt", Msg: "apt-get update", Frac: -1})
		}
		if uerr := exec.CommandContext(ctx, name, upd...).Run(); uerr != nil {
			return err
		}
		return run(args...)
	}
	return nil
}

// parseAptStatus reads one APT::Status-Fd line:
// "dlstatus:N:PERCENT:MESSAGE" or "pmstatus:PKG:PERCENT:MESSAGE".
func parseAptStatus(line string) (Event, bool) {
	parts := strings.SplitN(line, ":", 4)
	if len(parts) != 4 {
		return Event{}, false
	}
	pct, err := strconv.ParseFloat(parts[2], 64)
	if err != nil {
		return Event{}, false
	}
	switch parts[0] {
	case "dlstatus":
		return Event{Stage: "apt", Msg: "downloading: " + parts[3], Frac: pct / 100}, true
	case "pmstatus":
		return Event{Stage: "apt", Msg: parts[3], Frac: pct / 100}, true
	}
	return Event{}, false
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}
