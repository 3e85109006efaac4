// Package hullcli drives the hull CLI the way a user does — build,
// inspect, run — against a private data directory whose kernel store is
// a link to the user's, so `make compare` boots the user's kernels
// without touching their images.
//
// It only starts hull processes and collects their output; it knows
// nothing about what is being compared.
package hullcli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hullvm/hull/internal/manifest"
	"github.com/hullvm/hull/internal/surface"
)

// CLI is a hull binary with its own HULL_HOME.
type CLI struct {
	Bin  string
	Home string
}

// New makes a private home under tmp whose kernels directory links to
// kernels (the real store).
func New(bin, tmp, kernels string) (*CLI, error) {
	home := filepath.Join(tmp, "hull-home")
	if err := os.MkdirAll(home, 0o755); err != nil {
		return nil, err
	}
	if err := os.Symlink(kernels, filepath.Join(home, "kernels")); err != nil {
		return nil, fmt.Errorf("linking the kernel store: %w", err)
	}
	abs, err := filepath.Abs(bin)
	if err != nil {
		return nil, err
	}
	return &CLI{Bin: abs, Home: home}, nil
}

func (c *CLI) command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, c.Bin, args...)
	cmd.Env = append(os.Environ(), "HULL_HOME="+c.Home)
	return cmd
}

// Run runs hull to completion and returns its stdout and stderr; a
// non-zero exit is an error naming the command.
func (c *CLI) Run(ctx context.Context, args ...string) (stdout, stderr string, err error) {
	var out, errb bytes.Buffer
	cmd := c.command(ctx, args...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), errb.String(), fmt.Errorf("hull %s: %w: %s", strings.Join(args, " "), err, lastLine(errb.String()))
	}
	return out.String(), errb.String(), nil
}

// Inspect is the part of `hull inspect --json` the comparison reads.
type Inspect struct {
	Manifest manifest.Manifest `json:"manifest"`
	Summary  struct {
		surface.Report
		HullBytes int64 `json:"hull_bytes"`
	} `json:"summary"`
}

// Inspect reads an image's manifest and its app disk's surface report
// (hull inspect classifies the app disk with package surface).
func (c *CLI) Inspect(ctx context.Context, image string) (*Inspect, error) {
	out, _, err := c.Run(ctx, "inspect", image, "--json")
	if err != nil {
		return nil, err
	}
	var in Inspect
	if err := json.Unmarshal([]byte(out), &in); err != nil {
		return nil, fmt.Errorf("hull inspect %s --json: %w", image, err)
	}
	return &in, nil
}

// Proc is a hull running in the background.
type Proc struct {
	cmd     *exec.Cmd
	Started time.Time
	done    chan struct{}
	mu      sync.Mutex
	out     bytes.Buffer
	errb    bytes.Buffer
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// Start starts hull in the background; Started is the moment before exec.
func (c *CLI) Start(args ...string) (*Proc, error) {
	p := &Proc{done: make(chan struct{})}
	p.cmd = c.command(context.Background(), args...)
	p.cmd.Stdout = lockedWriter{&p.mu, &p.out}
	p.cmd.Stderr = lockedWriter{&p.mu, &p.errb}
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	p.Started = time.Now()
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting hull: %w", err)
	}
	go func() {
		p.cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// PID is hull's process id.
func (p *Proc) PID() int { return p.cmd.Process.Pid }

// Exited is closed when hull has exited.
func (p *Proc) Exited() <-chan struct{} { return p.done }

// Output returns what hull printed so far.
func (p *Proc) Output() (stdout, stderr string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String(), p.errb.String()
}

// Stop asks hull to stop the VM (SIGINT, as Ctrl-C) and kills it if it
// has not exited after grace.
func (p *Proc) Stop(grace time.Duration) {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-p.done:
	case <-time.After(grace):
		p.cmd.Process.Kill()
		<-p.done
	}
}

// QEMUArgv finds the QEMU command line that `hull run --verbose` prints
// and returns it split into arguments (nil when it is not there).
func QEMUArgv(verboseStderr string) []string {
	for _, line := range strings.Split(verboseStderr, "\n") {
		argv := splitQuoted(strings.TrimPrefix(strings.TrimSpace(line), "hull: "))
		if len(argv) > 0 && strings.Contains(argv[0], "qemu-system") {
			return argv
		}
	}
	return nil
}

// splitQuoted undoes qemu.Quote: words separated by blanks, single
// quotes around a word's literal parts, and a backslash outside quotes
// escaping the next character ('\” is an embedded quote).
func splitQuoted(line string) []string {
	var argv []string
	var word strings.Builder
	inWord, quoted, escaped := false, false, false
	for _, r := range line {
		switch {
		case escaped:
			word.WriteRune(r)
			escaped = false
		case quoted:
			if r == '\'' {
				quoted = false
			} else {
				word.WriteRune(r)
			}
		case r == '\'':
			quoted, inWord = true, true
		case r == '\\':
			escaped, inWord = true, true
		case r == ' ' || r == '\t':
			if inWord {
				argv = append(argv, word.String())
				word.Reset()
				inWord = false
			}
		default:
			word.WriteRune(r)
			inWord = true
		}
	}
	if inWord {
		argv = append(argv, word.String())
	}
	return argv
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}
