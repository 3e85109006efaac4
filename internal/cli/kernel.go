package cli

import (
	"encoding/json"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/hullvm/hull/internal/kernel"
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
			list, err := kernels.List()
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
				}
				rows := []row{}
				for _, b := range list {
					rows = append(rows, row{Bundle: b, Digest: b.Digest, Default: b.Digest == def})
				}
				enc := json.NewEncoder(env.Stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(rows)
			}
			tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tDIGEST\tKERNEL\tMODULES\tDEFAULT")
			for _, b := range list {
				mark := ""
				if b.Digest == def {
					mark = "*"
				}
				mods := fmt.Sprint(len(b.Modules))
				if b.Builtin {
					mods = "built in"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", b.Name, short(b.Digest), humanBytes(b.KernelSize), mods, mark)
			}
			return tw.Flush()
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
	cmd.AddCommand(ls, imp, setDef)
	return cmd
}
