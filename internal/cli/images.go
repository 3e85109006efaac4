package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/hullvm/hull/internal/initramfs"
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
			files, err := scanImage(images.BlobPath(ref))
			if err != nil {
				return err
			}
			sum := summary{Report: surface.Classify(files)}
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

// scanImage reads the app tree out of a stored image for classification,
// keeping the content only of ELF files (the classifier reads headers).
func scanImage(blob string) ([]surface.File, error) {
	fh, err := os.Open(blob)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	rc, _, err := initramfs.Decompress(fh)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	r := initramfs.NewReader(rc)
	var out []surface.File
	for {
		e, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("reading image: %w", err)
		}
		// The app's view is what an attacker inside the app reaches; the
		// init and modules beside it are listed by the manifest.
		rel, ok := strings.CutPrefix(e.Name, strings.TrimPrefix(manifest.AppRoot, "/"))
		if !ok || (rel != "" && !strings.HasPrefix(rel, "/")) {
			continue
		}
		if rel == "" {
			rel = "/"
		}
		f := surface.File{Path: rel, Mode: cpioMode(e), Size: e.Size}
		if e.IsRegular() {
			head := make([]byte, 4)
			n, _ := io.ReadFull(r, head)
			if n == 4 && bytes.Equal(head, []byte("\x7fELF")) {
				rest, err := io.ReadAll(r)
				if err != nil {
					return nil, fmt.Errorf("reading image: %w", err)
				}
				data := append(head, rest...)
				f.Open = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil }
			}
		}
		out = append(out, f)
	}
	return out, nil
}

func cpioMode(e initramfs.Entry) fs.FileMode {
	m := fs.FileMode(e.Perm() & 0o777)
	if e.Perm()&0o4000 != 0 {
		m |= fs.ModeSetuid
	}
	if e.Perm()&0o2000 != 0 {
		m |= fs.ModeSetgid
	}
	switch {
	case e.IsDir():
		m |= fs.ModeDir
	case e.IsSymlink():
		m |= fs.ModeSymlink
	case e.IsRegular():
	default:
		m |= fs.ModeDevice
	}
	return m
}
