package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/hullvm/hull/internal/kernel"
	"github.com/hullvm/hull/internal/kernelbuild"
	hullkernel "github.com/hullvm/hull/kernel"
)

func newKernelCmd(env Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "kernel",
		Short: "Manage kernel bundles",
	}
	var asJSON bool
	ls := &cobra.Command{
		Use:   "ls",
		Short: "List kernel bundles",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			_, kernels, err := stores()
			if err != nil {
				return err
			}
			// A damaged bundle is shown as such, not allowed to hide the
			// others: ls is where one goes to find out what is wrong.
			list, broken, err := kernels.Scan()
			if err != nil {
				return err
			}
			def, err := kernels.Default()
			if err != nil {
				return err
			}
			if asJSON {
				type row struct {
					*kernel.Bundle
					Digest  string `json:"digest"`
					Default bool   `json:"default"`
					Corrupt bool   `json:"corrupt,omitempty"`
					Reason  string `json:"reason,omitempty"` // why it is corrupt and how to repair it
				}
				rows := []row{}
				for _, b := range list {
					rows = append(rows, row{Bundle: b, Digest: b.Digest, Default: b.Digest == def})
				}
				for _, b := range broken {
					rows = append(rows, row{Digest: b.Digest, Default: b.Digest == def, Corrupt: true, Reason: b.Err.Error()})
				}
				enc := json.NewEncoder(env.Stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(rows)
			}
			tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tDIGEST\tSIZE\tMODULES\tDEFAULT")
			mark := func(digest string) string {
				if digest == def {
					return "*"
				}
				return ""
			}
			for _, b := range list {
				mods := fmt.Sprint(len(b.Modules))
				if b.Builtin {
					mods = "built in"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", b.Name, short(b.Digest), humanBytes(b.KernelSize), mods, mark(b.Digest))
			}
			for _, b := range broken {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", "(corrupt)", short(b.Digest), "-", "-", mark(b.Digest))
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			for _, b := range broken {
				fmt.Fprintf(env.Stderr, "hull: %v\n", b.Err)
			}
			return nil
		},
	}
	ls.Flags().BoolVar(&asJSON, "json", false, "print as JSON")
	imp := &cobra.Command{
		Use:   "import linux-image-*.deb",
		Short: "Import a Debian kernel package (vmlinuz and the virtio modules) into the kernel store",
		Example: `  apt-get download linux-image-6.1.0-57-cloud-amd64
  hull kernel import linux-image-6.1.0-57-cloud-amd64_*.deb`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			_, kernels, err := stores()
			if err != nil {
				return err
			}
			b, err := kernels.ImportDeb(cmd.Context(), args[0], nil)
			if err != nil {
				return err
			}
			def, _ := kernels.Default()
			mark := ""
			if def == b.Digest {
				mark = " (default)"
			}
			fmt.Fprintf(env.Stdout, "imported %s %s: kernel %s, %d modules%s\n", b.Name, short(b.Digest), humanBytes(b.KernelSize), len(b.Modules), mark)
			return nil
		},
	}
	setDef := &cobra.Command{
		Use:   "default NAME|DIGEST",
		Short: "Make a kernel bundle the default for new builds",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if strings.TrimSpace(args[0]) == "" {
				return errors.New("kernel default: give a kernel name or digest (hull kernel ls lists them)")
			}
			_, kernels, err := stores()
			if err != nil {
				return err
			}
			b, err := kernels.Get(args[0])
			if err != nil {
				return err
			}
			if err := kernels.SetDefault(b.Digest); err != nil {
				return err
			}
			fmt.Fprintf(env.Stdout, "default kernel: %s %s\n", b.Name, short(b.Digest))
			return nil
		},
	}
	cmd.AddCommand(ls, imp, setDef, newKernelBuildCmd(env))
	return cmd
}

func newKernelBuildCmd(env Env) *cobra.Command {
	var (
		asJSON       bool
		quiet        bool
		force        bool
		name         string
		fragmentFile string
		patchesDir   string
		workDir      string
		jobs         int
	)
	cmd := &cobra.Command{
		Use:   "build",
		Short: "Build hull's tuned kernel from Debian's linux-source package (cached)",
		Long: `Build the tuned kernel: Debian's linux-source-6.1 (installed with apt-get
when missing), hull's patches, make tinyconfig plus hull's config fragment,
a check that every option of the fragment stuck, and a build with all cores.
The kernel lands in the kernel store as one more bundle; make it the default
with hull kernel default tuned. A second build with the same source version,
fragment and patches returns the stored kernel at once.`,
		Example: `  hull kernel build
  hull kernel build --force
  hull build ./server --kernel tuned`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			// Everything the flags can get wrong is refused here, not after
			// minutes of compiling.
			if err := kernel.CheckName(name); err != nil {
				return fmt.Errorf("--name: %w", err)
			}
			if jobs < 0 {
				return fmt.Errorf("--jobs %d: give a positive number, or 0 for all CPUs", jobs)
			}
			// An empty value given on purpose is a mistake (an unset
			// variable in a script), not a request for the default.
			for flag, v := range map[string]string{"work-dir": workDir, "patches": patchesDir, "fragment": fragmentFile} {
				if cmd.Flags().Changed(flag) && strings.TrimSpace(v) == "" {
					return fmt.Errorf("--%s is empty: give a path, or leave the flag out for the default", flag)
				}
			}
			_, kernels, err := stores()
			if err != nil {
				return err
			}
			frag := hullkernel.Fragment()
			if fragmentFile != "" {
				if frag, err = os.ReadFile(fragmentFile); err != nil {
					return fmt.Errorf("--fragment: %w", err)
				}
			}
			var patches []kernelbuild.Patch
			if patchesDir != "" {
				if patches, err = kernelbuild.LoadPatches(patchesDir); err != nil {
					return fmt.Errorf("--patches: %w", err)
				}
			} else {
				if patches, err = kernelbuild.ReadPatches(hullkernel.Patches(), "kernel/patches (built in)"); err != nil {
					return err
				}
			}
			if workDir == "" {
				cache, err := os.UserCacheDir()
				if err != nil {
					return fmt.Errorf("finding a work directory: %w (give --work-dir)", err)
				}
				workDir = filepath.Join(cache, "hull", "kernel-build")
			}
			// make runs in the source tree, so a relative O= would land
			// somewhere else.
			if workDir, err = filepath.Abs(workDir); err != nil {
				return fmt.Errorf("--work-dir: %w", err)
			}
			pr := newProgressPrinter(env.Stderr)
			res, err := kernelbuild.Build(cmd.Context(), kernelbuild.Options{
				Store: kernels, Name: name, Fragment: frag, Patches: patches,
				WorkDir: workDir, Force: force, Jobs: jobs, Progress: pr.event,
			})
			pr.done()
			if err != nil {
				var be *kernelbuild.BuildError
				if errors.As(err, &be) && len(be.Tail) > 0 {
					fmt.Fprintf(env.Stderr, "hull: last lines of %s:\n", be.Step)
					for _, l := range be.Tail {
						fmt.Fprintln(env.Stderr, "  "+l)
					}
				}
				return err
			}
			b := res.Bundle
			if quiet {
				fmt.Fprintln(env.Stdout, b.Digest)
				return nil
			}
			if asJSON {
				enc := json.NewEncoder(env.Stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(struct {
					*kernel.Bundle
					Digest string `json:"digest"`
					Cached bool   `json:"cached"`
				}{b, b.Digest, res.Cached})
			}
			how := fmt.Sprintf("built in %s", res.Took.Round(time.Second))
			if res.Cached {
				how = fmt.Sprintf("cached (%s unchanged)", kernelbuild.SourcePackage+" "+res.SourceVersion+", fragment and patches")
			}
			def, _ := kernels.Default()
			mark := ""
			if def == b.Digest {
				mark = " (default)"
			}
			fmt.Fprintf(env.Stdout, "%s %s: %s %s, drivers built in, %s%s\n", b.Name, short(b.Digest), b.Release, humanBytes(b.KernelSize), how, mark)
			return nil
		},
	}
	fl := cmd.Flags()
	fl.BoolVar(&asJSON, "json", false, "print the bundle as JSON")
	fl.BoolVarP(&quiet, "quiet", "q", false, "print only the bundle's digest")
	fl.BoolVar(&force, "force", false, "rebuild from a clean tree even when the store has this kernel")
	fl.StringVar(&name, "name", kernelbuild.DefaultName, "bundle name")
	fl.StringVar(&fragmentFile, "fragment", "", "config fragment to use instead of the built-in kernel/hull.config")
	fl.StringVar(&patchesDir, "patches", "", "directory of *.patch files to use instead of the built-in kernel/patches")
	fl.StringVar(&workDir, "work-dir", "", "where the source is unpacked and built, about 2 GB (default $XDG_CACHE_HOME/hull/kernel-build)")
	fl.IntVarP(&jobs, "jobs", "j", 0, "parallel compile jobs (default: all CPUs)")
	return cmd
}

// progressPrinter shows build progress: one rewritten line on a
// terminal, otherwise a line per stage and per tenth of the compile.
type progressPrinter struct {
	w         io.Writer
	tty       bool
	stage     string
	lastTenth int
	lastDraw  time.Time
	drawn     bool
}

func newProgressPrinter(w io.Writer) *progressPrinter {
	p := &progressPrinter{w: w, lastTenth: -1}
	if f, ok := w.(*os.File); ok {
		p.tty = isTerminal(f)
	}
	return p
}

func (p *progressPrinter) event(e kernelbuild.Event) {
	pct := ""
	if e.Frac >= 0 {
		pct = fmt.Sprintf(" %3.0f%%", e.Frac*100)
	}
	if p.tty {
		if e.Stage == p.stage && time.Since(p.lastDraw) < 100*time.Millisecond {
			return
		}
		p.stage, p.lastDraw, p.drawn = e.Stage, time.Now(), true
		line := fmt.Sprintf("hull: kernel %s%s: %s", e.Stage, pct, e.Msg)
		if len(line) > 100 {
			line = line[:100]
		}
		fmt.Fprintf(p.w, "\r\033[K%s", line)
		return
	}
	if e.Stage != p.stage {
		p.stage, p.lastTenth = e.Stage, -1
		fmt.Fprintf(p.w, "hull: kernel %s: %s\n", e.Stage, e.Msg)
		return
	}
	if e.Frac >= 0 {
		if tenth := int(e.Frac * 10); tenth > p.lastTenth {
			p.lastTenth = tenth
			fmt.Fprintf(p.w, "hull: kernel %s%s\n", e.Stage, pct)
		}
	}
}

func (p *progressPrinter) done() {
	if p.tty && p.drawn {
		fmt.Fprint(p.w, "\r\033[K")
	}
}
