// Package cli is hull's command line: it parses flags into a spec and
// options, calls the packages that do the work, and is the only place
// (with cmd/hull) that talks to the terminal. Output goes to the writers
// in Env so tests capture it; errors come back to Main as one line.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/hullvm/hull/internal/dirs"
	"github.com/hullvm/hull/internal/image"
	"github.com/hullvm/hull/internal/kernel"
)

// Env is what commands read and write besides their flags.
type Env struct {
	Stdout io.Writer
	Stderr io.Writer
	// Signals delivers interrupt requests (SIGINT/SIGTERM) to long
	// commands; nil means none arrive.
	Signals <-chan os.Signal
}

// exitError carries a specific exit status (the app's, for hull run).
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

// Main runs the command line and returns the process exit status.
func Main(ctx context.Context, args []string, env Env) int {
	root := newRoot(env)
	root.SetArgs(args)
	root.SetOut(env.Stdout)
	root.SetErr(env.Stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	if errors.Is(err, context.Canceled) {
		fmt.Fprintln(env.Stderr, "hull: stopped")
		return 130
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.msg != "" {
			fmt.Fprintln(env.Stderr, "hull: "+ee.msg)
		}
		return ee.code
	}
	fmt.Fprintln(env.Stderr, "hull: "+oneLine(err.Error()))
	return 1
}

func oneLine(s string) string {
	s = strings.TrimSpace(s)
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", " ")), " ")
}

func newRoot(env Env) *cobra.Command {
	root := &cobra.Command{
		Use:           "hull",
		Short:         "Seal one Linux program into a locked-down VM image and run it",
		SilenceUsage:  true,
		SilenceErrors: true,
		Long: `hull turns one unmodified Linux program into a sealed VM image — the program,
exactly the files it provably needs, a kernel and hull's init, nothing else —
and boots it in its own VM where it cannot start other programs, load kernel
modules, mount, trace, or write its root filesystem.`,
	}
	root.CompletionOptions.DisableDefaultCmd = true
	// Every command but run (which stops its VM gracefully itself) is
	// cancelled by the first interrupt: a kernel build or import stops and
	// leaves the stores as they were. A second interrupt exits at once.
	root.PersistentPreRunE = func(cmd *cobra.Command, _ []string) error {
		if cmd.Name() == "run" || env.Signals == nil {
			return nil
		}
		ctx, cancel := context.WithCancel(cmd.Context())
		cmd.SetContext(ctx)
		go func() {
			select {
			case s := <-env.Signals:
				fmt.Fprintf(env.Stderr, "hull: %v: stopping (again to exit at once)\n", s)
				cancel()
			case <-ctx.Done():
				return
			}
			<-env.Signals
			os.Exit(130)
		}()
		return nil
	}
	root.AddCommand(
		newBuildCmd(env),
		newRunCmd(env),
		newImagesCmd(env),
		newInspectCmd(env),
		newRmiCmd(env),
		newKernelCmd(env),
	)
	return root
}

// stores opens the image and kernel stores.
func stores() (*image.Store, *kernel.Store, error) {
	data, err := dirs.Data()
	if err != nil {
		return nil, nil, err
	}
	return &image.Store{Dir: dirs.Images(data)}, &kernel.Store{Dir: dirs.Kernels(data)}, nil
}

// initBinary finds hull-init: HULL_INIT, else next to the hull binary.
func initBinary() (string, error) {
	if p := os.Getenv("HULL_INIT"); p != "" {
		return p, nil
	}
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("locating hull-init: %w", err)
	}
	if resolved, err := filepath.EvalSymlinks(exe); err == nil {
		exe = resolved
	}
	p := filepath.Join(filepath.Dir(exe), "hull-init")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("hull-init not found next to %s: build both with `make build`, or set HULL_INIT", exe)
	}
	return p, nil
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

func short(digest string) string {
	if len(digest) > 12 {
		return digest[:12]
	}
	return digest
}
