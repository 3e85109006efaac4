package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"text/tabwriter"

	erofs "github.com/erofs/go-erofs"
	"github.com/spf13/cobra"

	"github.com/hullvm/hull/internal/image"
	"github.com/hullvm/hull/internal/manifest"
	"github.com/hullvm/hull/internal/surface"
)

func newImagesCmd(env Env) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "images",
		Short: "List built images",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			images, _, err := stores()
			if err != nil {
				return err
			}
			refs, err := images.List()
			if err != nil {
				return err
			}
			if asJSON {
				if refs == nil {
					refs = []*image.Ref{}
				}
				enc := json.NewEncoder(env.Stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(refs)
			}
			tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tDIGEST\tSIZE\tCREATED\tPROGRAM")
			for _, r := range refs {
				fmt.Fprintf(tw, "%s\tsha256:%s\t%s\t%s\t%s\n", r.Name, short(r.Digest), humanBytes(r.Size), r.Created.Local().Format("2006-01-02 15:04:05"), r.Program)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print as JSON")
	return cmd
}

func newRmiCmd(env Env) *cobra.Command {
	return &cobra.Command{
		Use:   "rmi IMAGE...",
		Short: "Remove images",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			images, _, err := stores()
			if err != nil {
				return err
			}
			for _, a := range args {
				if err := images.Remove(a); err != nil {
					return err
				}
				fmt.Fprintln(env.Stdout, "removed "+a)
			}
			return nil
		},
	}
}

// inspectOutput is the --json form of hull inspect.
type inspectOutput struct {
	Name     string             `json:"name"`
	Digest   string             `json:"digest"`
	Size     int64              `json:"size"`
	Manifest *manifest.Manifest `json:"manifest"`
	Summary  summary            `json:"summary"`
}

// summary is the attack-surface line of an image.
type summary struct {
	surface.Report
	// HullBytes is what hull adds beyond the app and its libraries: the
	// init, the kernel modules and the generated files.
	HullBytes int64 `json:"hull_bytes"`
}

func newInspectCmd(env Env) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "inspect IMAGE",
		Short: "List every file in an image and why it is there",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			images, _, err := stores()
			if err != nil {
				return err
			}
			ref, err := images.Get(args[0])
			if err != nil {
				return fmt.Errorf("%w (see hull images)", err)
			}
			m, err := images.Manifest(ref)
			if err != nil {
				return err
			}
			rep, err := appDiskReport(images.AppDiskPath(ref))
			if err != nil {
				return err
			}
			sum := summary{Report: rep}
			for _, f := range m.System {
				sum.HullBytes += f.Size
			}
			for _, f := range m.Files {
				if strings.HasPrefix(f.Reason, "generated") {
					sum.HullBytes += f.Size
				}
			}
			if asJSON {
				enc := json.NewEncoder(env.Stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(inspectOutput{Name: ref.Name, Digest: ref.Digest, Size: ref.Size, Manifest: m, Summary: sum})
			}
			fmt.Fprintf(env.Stdout, "%s  sha256:%s  %s compressed  kernel %s (%s)\n", ref.Name, short(ref.Digest), humanBytes(ref.Size), m.Kernel.Name, short(m.Kernel.Digest))
			fmt.Fprintf(env.Stdout, "runs %s", m.Program)
			for _, a := range m.Args {
				fmt.Fprintf(env.Stdout, " %q", a)
			}
			fmt.Fprintf(env.Stdout, " as %s (uid %d), cwd %s, capabilities: %s\n\n", m.User.Name, m.User.UID, m.Cwd, orNone(m.Capabilities))
			tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "MODE\tSIZE\tPATH\tWHY")
			for _, f := range m.Files {
				p := f.Path
				if f.Link != "" {
					p += " -> " + f.Link
				}
				why := f.Reason
				if f.Overrides != "" {
					why += " [overrides: " + f.Overrides + "]"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", modeString(f), sizeString(f), p, why)
			}
			for _, f := range m.System {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", modeString(f), sizeString(f), "(outside the app's view) "+f.Path, f.Reason)
			}
			tw.Flush()
			fmt.Fprintln(env.Stdout)
			fmt.Fprintln(env.Stdout, summaryLine(sum))
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the manifest and summary as JSON")
	return cmd
}

func orNone(l []string) string {
	if len(l) == 0 {
		return "none"
	}
	return strings.Join(l, ", ")
}

func summaryLine(s summary) string {
	progs := "none"
	if len(s.Programs) > 0 {
		progs = strings.Join(s.Programs, ", ")
	}
	return fmt.Sprintf("summary (the app's view): %d files (%s), %d executable ELF program(s): %s; %d shared libraries; "+
		"%d shells, %d interpreters, %d package managers, %d compilers, %d download tools; %d setuid/setgid; %d device nodes; hull adds %s",
		s.Files, humanBytes(s.Bytes), len(s.Programs), progs, s.SharedLibraries,
		len(s.Shells), len(s.Interpreters), len(s.PackageManagers), len(s.Compilers), len(s.Downloaders),
		len(s.Setuid), len(s.Devices), humanBytes(s.HullBytes))
}

func modeString(f manifest.File) string {
	m := fs.FileMode(f.Mode & 0o777)
	switch f.Type {
	case "dir":
		m |= fs.ModeDir
	case "symlink":
		m = fs.ModeSymlink | 0o777
	}
	return m.String()
}

func sizeString(f manifest.File) string {
	if f.Type != "file" {
		return "-"
	}
	return humanBytes(f.Size)
}

// appDiskReport classifies the app tree on an image's app disk: what an
// attacker inside the app could reach. The init and the modules beside
// it are listed by the manifest.
func appDiskReport(disk string) (surface.Report, error) {
	fh, err := os.Open(disk)
	if err != nil {
		return surface.Report{}, err
	}
	defer fh.Close()
	img, err := erofs.Open(fh)
	if err != nil {
		return surface.Report{}, fmt.Errorf("reading app disk: %w", err)
	}
	var out []surface.File
	err = fs.WalkDir(img, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		f := surface.File{Path: "/" + p, Mode: info.Mode(), Size: info.Size()}
		if p == "." {
			f.Path = "/"
		}
		if info.Mode().IsRegular() {
			name := p
			f.Open = func() (io.ReadCloser, error) { return img.Open(name) }
		}
		out = append(out, f)
		return nil
	})
	if err != nil {
		return surface.Report{}, fmt.Errorf("reading app disk: %w", err)
	}
	// Classify reads ELF headers through img, so it runs while fh is open.
	return surface.Classify(out), nil
}
