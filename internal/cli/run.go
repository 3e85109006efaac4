package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/hullvm/hull/internal/dirs"
	"github.com/hullvm/hull/internal/image"
	"github.com/hullvm/hull/internal/initramfs"
	"github.com/hullvm/hull/internal/runner"
	"github.com/hullvm/hull/internal/spec"
)

// Exit statuses of hull run besides the app's own.
const (
	exitHullError = 125 // hull or the VM failed
)

func newRunCmd(env Env) *cobra.Command {
	var (
		f           specFlags
		runEnv      []string
		accel       string
		stopTimeout time.Duration
		verbose     bool
		specFile    string
		compressed  bool
		kernelArgs  []string
		eventsFile  string
		network     string
		flowLog     string
	)
	cmd := &cobra.Command{
		Use:   "run IMAGE|PROGRAM [flags] [-- ARGS...]",
		Short: "Boot an image (building it first when given a program) and run the app",
		Long: `Boot an image in its own VM and stream the app's output here. Given a path to
a program instead of an image name, build it first. The app's exit status
becomes hull's. Ctrl-C sends the app SIGTERM and waits --stop-timeout before
killing the VM; a second Ctrl-C kills at once.`,
		Example: `  hull run ./server -p 8080:8080
  hull run redis -p 6379:6379
  hull run ./hello; echo $?`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			target, progArgs, argsGiven, err := splitProgramArgs(cmd, args)
			if err != nil {
				return err
			}
			if target == "" && specFile == "" {
				return errors.New("say what to run: an image name (see hull images) or a program path, e.g. hull run ./server")
			}
			envList, err := runtimeEnv(runEnv)
			if err != nil {
				return err
			}
			// Flags are checked before the target, so a typo is named
			// even when the image does not exist.
			o, err := f.overlay()
			if err != nil {
				return err
			}
			images, kernels, err := stores()
			if err != nil {
				return err
			}
			ref, err := resolveRunTarget(cmd, env, images, target, specFile, &f)
			if err != nil {
				return err
			}
			if err := images.Verify(ref); err != nil {
				return err
			}
			m, err := images.Manifest(ref)
			if err != nil {
				return err
			}
			k, err := kernels.Get(m.Kernel.Digest)
			if err != nil {
				return fmt.Errorf("image %s was built for kernel %s (%s), which is not in the kernel store: %w", ref.Name, m.Kernel.Name, short(m.Kernel.Digest), err)
			}
			ports := o.Ports
			if len(ports) == 0 {
				for _, p := range m.Runtime.Ports {
					pp, err := spec.ParsePort(p)
					if err != nil {
						return fmt.Errorf("image %s: %w", ref.Name, err)
					}
					ports = append(ports, pp)
				}
			}
			mem := int64(o.Memory)
			if mem == 0 {
				mem = m.Runtime.Memory
			}
			if mem == 0 {
				mem = int64(spec.DefaultMemory)
			}
			if mem < int64(spec.MinMemory) {
				return fmt.Errorf("--memory %s: the kernel and init need at least %s", spec.Size(mem), spec.MinMemory)
			}
			cpus := o.CPUs
			if cmd.Flags().Changed("cpus") && (cpus < 1 || cpus > 64) {
				return fmt.Errorf("--cpus %d: must be between 1 and 64", cpus)
			}
			if cpus == 0 {
				cpus = m.Runtime.CPUs
			}
			if cpus < 1 {
				cpus = 1
			}
			if err := checkKernelArgs(kernelArgs); err != nil {
				return err
			}
			ctx, cancel := context.WithCancel(cmd.Context())
			defer cancel()
			kill := make(chan struct{})
			stopSignals := make(chan struct{})
			defer close(stopSignals)
			go func() {
				n := 0
				for {
					select {
					case <-env.Signals:
						n++
						if n == 1 {
							cancel()
						} else {
							close(kill)
							return
						}
					case <-stopSignals:
						return
					}
				}
			}()
			egress, err := imageEgress(m.Runtime.Egress)
			if err != nil {
				return fmt.Errorf("image %s: %w", ref.Name, err)
			}
			egress = append(egress, o.Egress...)
			dnsUp := o.DNS.Upstream
			if dnsUp == "" {
				dnsUp = m.Runtime.DNSUpstream
			}
			flows, flowPath, err := openFlowLog(flowLog, ref.Name, network)
			if err != nil {
				return err
			}
			if flows != nil {
				defer func() {
					flows.Close()
					fmt.Fprintf(env.Stderr, "hull: flow log: %s\n", flowPath)
				}()
			}
			onEvent, closeEvents, err := eventWriter(eventsFile)
			if err != nil {
				return err
			}
			defer closeEvents()
			res, err := runner.Run(ctx, runner.Options{
				OnEvent: onEvent,
				Name:    ref.Name, Image: images.BlobPath(ref), AppDisk: images.AppDiskPath(ref), Manifest: m, Kernel: k, Args: progArgs, ArgsSet: argsGiven,
				MemoryMiB: mem >> 20, CPUs: cpus, Ports: ports, Env: envList,
				Accel: accel, Verbose: verbose, StopTimeout: stopTimeout,
				Stdout: env.Stdout, Stderr: env.Stderr, Log: env.Stderr, Kill: kill,
				RuntimeDir: dirs.Runtime(), KeepCompressed: compressed, KernelArgs: kernelArgs,
				Network: network, Egress: egress, DNSUpstream: dnsUp, FlowLog: flowWriter(flows),
			})
			return runOutcome(env, res, err)
		},
	}
	// Whatever fails in hull itself, before or around the VM, exits 125,
	// so a script can tell it from the app's own exit status.
	inner := cmd.RunE
	cmd.RunE = func(c *cobra.Command, a []string) error { return asHullError(inner(c, a)) }
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return asHullError(err) })
	f.register(cmd.Flags(), true)
	fl := cmd.Flags()
	fl.StringVarP(&specFile, "file", "f", "", "build from this hull.yaml, then run")
	fl.StringArrayVarP(&runEnv, "env", "e", nil, "KEY=VALUE (or KEY, from hull's environment) for the app; held in memory only, never stored")
	fl.StringVar(&accel, "accel", "auto", "accelerator: kvm, tcg or auto")
	fl.DurationVar(&stopTimeout, "stop-timeout", 10*time.Second, "how long the app has to exit after SIGTERM before the VM is killed")
	fl.BoolVarP(&verbose, "verbose", "v", false, "show the QEMU command line, kernel and init messages")
	fl.StringVar(&network, "network", runner.NetworkGateway, "guest network: gateway (zero-trust: egress only by --allow rules) or user (QEMU's, no egress at all)")
	fl.StringVar(&flowLog, "flow-log", "", "append the gateway's flow log (JSON lines) to this file (default: $XDG_STATE_HOME/hull/flows/IMAGE.jsonl)")
	fl.StringVar(&eventsFile, "events", "", "append boot milestones (JSON lines, times since launch) to this file")
	fl.StringArrayVar(&kernelArgs, "kernel-arg", nil, "append a word to the kernel command line (boot diagnostics, e.g. initcall_debug)")
	fl.BoolVar(&compressed, "boot-compressed", false, "let the guest kernel decompress the initramfs (default: the host does, faster under emulation)")
	return cmd
}

// asHullError gives an error that carries no exit status of its own
// hull's status for its own failures (125).
func asHullError(err error) error {
	var ee *exitError
	if err == nil || errors.As(err, &ee) {
		return err
	}
	return &exitError{code: exitHullError, msg: oneLine(err.Error())}
}

// kernelArgRefused are command-line words --kernel-arg does not pass: they
// would replace hull's init or root, switch off a security module or
// hardening, or redirect the console and control channel. The flag is for
// boot diagnostics; the lockdown is not the user's to waive by accident.
var kernelArgRefused = []string{
	"init=", "rdinit=", "root=", "rootfstype=", "rootflags=", "nfsroot=", "ip=",
	"lsm=", "security=", "landlock", "apparmor", "selinux", "module.", "mitigations=",
	"nosmap", "nosmep", "noexec", "nokaslr", "norandmaps", "console=", "earlycon", "panic",
	"reboot=", "hull.", "sysctl.", "virtio_mmio.", "--",
}

// maxKernelArgs bounds what --kernel-arg adds: x86's command line holds
// 2048 bytes and hull and QEMU's microvm need several hundred of them.
const maxKernelArgs = 1024

// checkKernelArgs refuses --kernel-arg values that are not one plain
// diagnostic word each.
func checkKernelArgs(args []string) error {
	total := 0
	for _, a := range args {
		total += len(a) + 1
		if a == "" || strings.ContainsFunc(a, func(r rune) bool { return r <= ' ' || r == '"' || r > '~' }) {
			return fmt.Errorf("--kernel-arg %q: give one word per flag, without spaces or quotes", a)
		}
		for _, p := range kernelArgRefused {
			if strings.HasPrefix(strings.ToLower(a), p) {
				return fmt.Errorf("--kernel-arg %s: refused (it would change hull's init, root, console or a security setting; the flag is for boot diagnostics such as initcall_debug)", a)
			}
		}
	}
	if total > maxKernelArgs {
		return fmt.Errorf("--kernel-arg: %d bytes in all, more than the %d the kernel command line has room for", total, maxKernelArgs)
	}
	return nil
}

// runtimeEnv checks -e values; a bare KEY takes hull's own value.
func runtimeEnv(in []string) ([]string, error) {
	var out []string
	for _, e := range in {
		k, _, hasValue := strings.Cut(e, "=")
		if !hasValue {
			v, ok := os.LookupEnv(k)
			if !ok {
				return nil, fmt.Errorf("-e %s: no value given and %s is not set in this environment", k, k)
			}
			e = k + "=" + v
		}
		probe := spec.Spec{Env: spec.EnvList{e}, Program: "x", Name: "x", Hostname: "x", Cwd: "/", Memory: spec.DefaultMemory, CPUs: 1, TmpSize: spec.DefaultTmpSize}
		if err := probe.Validate(); err != nil {
			return nil, fmt.Errorf("-e %s", strings.TrimPrefix(err.Error(), "env[0] "))
		}
		out = append(out, e)
	}
	return out, nil
}

// resolveRunTarget finds the image to run, building it when the target
// is a program path or a spec file is given.
func resolveRunTarget(cmd *cobra.Command, env Env, images *image.Store, target, specFile string, f *specFlags) (*image.Ref, error) {
	looksLikePath := strings.ContainsRune(target, '/')
	if specFile == "" && !looksLikePath {
		ref, err := images.Get(target)
		if err == nil {
			return ref, nil
		}
		if !errors.Is(err, image.ErrNotFound) {
			return nil, err
		}
		if st, serr := os.Stat(target); serr != nil || st.IsDir() {
			return nil, fmt.Errorf("no image named %q (see hull images); to build and run a program give its path, e.g. ./%s", target, target)
		}
	}
	bf := specFlags{file: specFile, memory: f.memory, cpus: f.cpus}
	s, err := bf.loadSpec(target, nil, false)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	res, err := buildImage(cmd, s, initramfs.Zstd)
	if err != nil {
		return nil, err
	}
	for _, w := range res.Warnings {
		fmt.Fprintln(env.Stderr, "hull: warning: "+w)
	}
	fmt.Fprintf(env.Stderr, "hull: built %s sha256:%s (%s) in %v\n", res.Ref.Name, short(res.Ref.Digest), humanBytes(res.Ref.Size), time.Since(start).Round(time.Millisecond))
	return res.Ref, nil
}

// imageEgress parses the egress rules stored in an image's manifest.
func imageEgress(rules []string) ([]spec.EgressRule, error) {
	var out []spec.EgressRule
	for _, r := range rules {
		er, err := spec.ParseAllow(r)
		if err != nil {
			return nil, err
		}
		out = append(out, er)
	}
	return out, nil
}

// openFlowLog opens the gateway's flow log for appending.
func openFlowLog(path, image, network string) (*os.File, string, error) {
	if network == runner.NetworkUser {
		return nil, "", nil
	}
	if path == "" {
		path = filepath.Join(dirs.State(), "flows", image+".jsonl")
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, "", fmt.Errorf("flow log: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, "", fmt.Errorf("flow log: %w", err)
	}
	return f, path, nil
}

// flowWriter keeps a nil *os.File from becoming a non-nil io.Writer.
func flowWriter(f *os.File) io.Writer {
	if f == nil {
		return nil
	}
	return f
}

// eventWriter returns a callback writing runner events as JSON lines.
func eventWriter(path string) (func(runner.Event), func(), error) {
	if path == "" {
		return nil, func() {}, nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, nil, fmt.Errorf("--events: %w", err)
	}
	var mu sync.Mutex
	enc := json.NewEncoder(f)
	return func(e runner.Event) {
		mu.Lock()
		defer mu.Unlock()
		enc.Encode(struct {
			Name   string  `json:"name"`
			AtMS   float64 `json:"at_ms"`
			Uptime float64 `json:"guest_uptime,omitempty"`
			Detail string  `json:"detail,omitempty"`
		}{e.Name, float64(e.At.Microseconds()) / 1000, e.Uptime, e.Detail})
	}, func() { f.Close() }, nil
}

func runOutcome(env Env, res *runner.Result, err error) error {
	if err != nil {
		var se *runner.StartError
		if errors.As(err, &se) {
			return &exitError{code: se.Code, msg: "the app could not start: " + se.Msg}
		}
		var xe *runner.ExitError
		if errors.As(err, &xe) {
			if xe.Console != "" {
				fmt.Fprintln(env.Stderr, "hull: last console output:")
				fmt.Fprintln(env.Stderr, lastLines(xe.Console, 15))
			}
			return &exitError{code: exitHullError, msg: xe.Reason}
		}
		return &exitError{code: exitHullError, msg: oneLine(err.Error())}
	}
	if res.Killed {
		return &exitError{code: 137, msg: "the VM was killed before the app exited"}
	}
	if res.Signal != 0 {
		return &exitError{code: res.ExitCode, msg: fmt.Sprintf("the app was killed by signal %d", res.Signal)}
	}
	if res.ExitCode != 0 {
		return &exitError{code: res.ExitCode}
	}
	return nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
