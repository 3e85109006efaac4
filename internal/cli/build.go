package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/hullvm/hull/internal/builder"
	"github.com/hullvm/hull/internal/elfdeps"
	"github.com/hullvm/hull/internal/initramfs"
	"github.com/hullvm/hull/internal/spec"
)

// specFlags are the spec fields settable from the command line.
type specFlags struct {
	file     string
	name     string
	env      []string
	cwd      string
	add      []string
	ports    []string
	memory   spec.Size
	cpus     int
	tmpSize  spec.Size
	caps     []string
	allow    []string
	dnsUp    string
	kernel   string
	noCA     bool
	hostname string
	sysroot  string
}

func (f *specFlags) register(fs *pflag.FlagSet, forRun bool) {
	if !forRun {
		fs.StringVarP(&f.file, "file", "f", "", "read the spec from this hull.yaml")
		fs.StringVarP(&f.name, "name", "n", "", "image name (default: the program's base name)")
		fs.StringVar(&f.cwd, "cwd", "", "working directory inside the guest (default /)")
		fs.StringArrayVar(&f.add, "add", nil, "copy a host file or directory into the image: HOST:GUEST (repeatable)")
		fs.Var(&f.tmpSize, "tmp-size", "size cap of the app's /tmp, e.g. 64M")
		fs.StringSliceVar(&f.caps, "cap", nil, "capability the app keeps, e.g. NET_BIND_SERVICE (repeatable)")
		fs.StringVar(&f.kernel, "kernel", "", "kernel bundle to build for (name or digest; default: the default bundle)")
		fs.BoolVar(&f.noCA, "no-ca-certs", false, "leave the host CA bundle out of the image")
		fs.StringVar(&f.hostname, "hostname", "", "guest hostname (default: the image name)")
		fs.StringVar(&f.sysroot, "sysroot", "", "look libraries up under this root instead of /")
		fs.StringArrayVarP(&f.env, "env", "e", nil, "KEY=VALUE baked into the image (repeatable; not for secrets)")
	}
	fs.StringArrayVarP(&f.ports, "publish", "p", nil, "forward [hostIP:]hostPort:guestPort[/udp] (host side 127.0.0.1 unless given)")
	fs.Var(&f.memory, "memory", "guest memory, e.g. 128M")
	fs.IntVar(&f.cpus, "cpus", 0, "number of vCPUs")
	fs.StringArrayVar(&f.allow, "allow", nil, "allow egress to DEST:PORTS[/udp], DEST a DNS name or CIDR (repeatable)")
	fs.StringVar(&f.dnsUp, "dns-upstream", "", "resolver the gateway asks for allowed names (IP:PORT)")
}

// overlay converts the flags into a spec to merge over the file's.
func (f *specFlags) overlay() (*spec.Spec, error) {
	o := &spec.Spec{
		Name: f.name, Cwd: f.cwd, Memory: f.memory, CPUs: f.cpus, TmpSize: f.tmpSize,
		Kernel: f.kernel, Hostname: f.hostname, Sysroot: f.sysroot,
	}
	if f.sysroot != "" {
		abs, err := filepath.Abs(f.sysroot)
		if err != nil {
			return nil, err
		}
		o.Sysroot = abs
	}
	o.Env = append(o.Env, f.env...)
	for _, a := range f.add {
		m, err := spec.ParseMount(a)
		if err != nil {
			return nil, fmt.Errorf("--add %w", err)
		}
		st, err := os.Stat(m.Host)
		if err != nil {
			return nil, fmt.Errorf("--add %s: %w", a, err)
		}
		if st.IsDir() {
			o.Dirs = append(o.Dirs, m)
		} else {
			o.Files = append(o.Files, m)
		}
	}
	for _, p := range f.ports {
		pp, err := spec.ParsePort(p)
		if err != nil {
			return nil, fmt.Errorf("-p %w", err)
		}
		o.Ports = append(o.Ports, pp)
	}
	for _, a := range f.allow {
		r, err := spec.ParseAllow(a)
		if err != nil {
			return nil, err
		}
		o.Egress = append(o.Egress, r)
	}
	if f.caps != nil {
		o.Capabilities = f.caps
	}
	if f.noCA {
		no := false
		o.CACerts = &no
	}
	o.DNS.Upstream = f.dnsUp
	return o, nil
}

// loadSpec merges hull.yaml (if any), the program argument and flags.
func (f *specFlags) loadSpec(program string, args []string, argsGiven bool) (*spec.Spec, error) {
	s := &spec.Spec{}
	if f.file != "" {
		var err error
		if s, err = spec.Load(f.file); err != nil {
			return nil, err
		}
	}
	o, err := f.overlay()
	if err != nil {
		return nil, err
	}
	if program != "" {
		o.Program = program
	}
	if argsGiven {
		o.Args = args
	}
	s.Merge(o)
	s.Normalize()
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return s, nil
}

func newBuildCmd(env Env) *cobra.Command {
	var f specFlags
	var asJSON bool
	var codec string
	cmd := &cobra.Command{
		Use:   "build [PROGRAM] [flags] [-- ARGS...]",
		Short: "Seal a program into an image",
		Long: `Build an image from one Linux program (or from hull.yaml with -f).

The image holds the program, the shared objects its ELF headers prove it
needs (found without running anything), a few generated /etc files, the
files you add, hull's init and kernel modules — nothing else.`,
		Example: `  hull build ./server --name web
  hull build /usr/bin/redis-server --name redis -- --port 6379 --protected-mode no
  hull build -f hull.yaml`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			program, progArgs, argsGiven, err := splitProgramArgs(cmd, args)
			if err != nil {
				return err
			}
			c, err := initramfs.ParseCodec(codec)
			if err != nil {
				return err
			}
			s, err := f.loadSpec(program, progArgs, argsGiven)
			if err != nil {
				return err
			}
			start := time.Now()
			res, err := buildImage(cmd, s, c)
			if err != nil {
				return err
			}
			for _, w := range res.Warnings {
				fmt.Fprintln(env.Stderr, "hull: warning: "+w)
			}
			if asJSON {
				enc := json.NewEncoder(env.Stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(res.Ref)
			}
			fmt.Fprintf(env.Stdout, "%s sha256:%s %s, %d entries (%s)\n", res.Ref.Name, short(res.Ref.Digest),
				humanBytes(res.Ref.Size), len(res.Manifest.Files), time.Since(start).Round(time.Millisecond))
			return nil
		},
	}
	f.register(cmd.Flags(), false)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the stored image as JSON")
	cmd.Flags().StringVar(&codec, "compress", string(initramfs.Zstd), "initramfs compression: zstd, gzip or none")
	return cmd
}

// splitProgramArgs takes PROGRAM [-- ARGS]: everything after "--" is the
// program's, so its flags never mix with hull's.
func splitProgramArgs(cmd *cobra.Command, args []string) (program string, progArgs []string, given bool, err error) {
	dash := cmd.ArgsLenAtDash()
	before := args
	if dash >= 0 {
		before, progArgs, given = args[:dash], args[dash:], true
		if progArgs == nil {
			progArgs = []string{}
		}
	}
	switch len(before) {
	case 0:
	case 1:
		program = before[0]
	default:
		return "", nil, false, fmt.Errorf("unexpected argument %q: put the program's own arguments after --, e.g. hull %s %s -- %s",
			before[1], cmd.Name(), before[0], strings.Join(before[1:], " "))
	}
	return program, progArgs, given, nil
}

func buildImage(cmd *cobra.Command, s *spec.Spec, c initramfs.Codec) (*builder.Result, error) {
	images, kernels, err := stores()
	if err != nil {
		return nil, err
	}
	initPath, err := initBinary()
	if err != nil {
		return nil, err
	}
	res, err := builder.Build(cmd.Context(), builder.Options{Spec: s, Kernels: kernels, Init: initPath, Store: images, Codec: c})
	if err != nil {
		return nil, explainBuildError(err)
	}
	return res, nil
}

// explainBuildError keeps typed resolver errors as they are (their text
// is already the one line a user needs) and adds context to the rest.
func explainBuildError(err error) error {
	var notELF *elfdeps.NotELFError
	var arch *elfdeps.ArchError
	var missing *elfdeps.MissingLibraryError
	switch {
	case errors.As(err, &notELF), errors.As(err, &arch), errors.As(err, &missing):
		return err
	}
	return fmt.Errorf("build failed: %w", err)
}
