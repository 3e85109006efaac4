// Command compare measures hull against a traditional server VM — a
// Debian minbase root with redis-server, booted with the same kernel
// bundle, QEMU machine, memory and CPUs — and prints a table of attack
// surface, boot time, memory, throughput and red-team results, with a
// one-line summary. It writes the same data as JSON and a chart of the
// surface and attack counts. `make compare` runs it; see docs/compare.md.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/hullvm/hull/compare/internal/report"
	"github.com/hullvm/hull/compare/internal/study"
)

func main() {
	var cfg study.Config
	out := flag.String("out", ".cache/compare", "directory for result.json, compare.svg and compare.png")
	flag.StringVar(&cfg.HullBin, "hull", "bin/hull", "hull binary")
	flag.StringVar(&cfg.CacheDir, "cache", ".cache/compare", "cache for the traditional root (built once, reused)")
	flag.StringVar(&cfg.Kernel, "kernel", "", "kernel bundle both VMs boot, name or digest (default: the store's default bundle)")
	flag.IntVar(&cfg.Runs, "runs", 3, "boots per boot-time measurement and side")
	flag.IntVar(&cfg.MemoryMiB, "memory", 256, "guest memory of both VMs, MiB")
	flag.IntVar(&cfg.CPUs, "cpus", 1, "vCPUs of both VMs")
	flag.IntVar(&cfg.Requests, "requests", 100000, "redis-benchmark -n")
	rootOnly := flag.Bool("root-only", false, "only build (or find) the cached traditional root and exit")
	boot := flag.String("boot-traditional", "", "only boot the traditional VM with this app (redis, http, guestinfo, redteam) until Ctrl-C, console on stderr")
	port := flag.Int("port", 16379, "with -boot-traditional: host port on 127.0.0.1 forwarded to the app's port")
	flag.Parse()
	cfg.Log = os.Stderr
	if err := absolute(&cfg.HullBin, &cfg.CacheDir, out); err != nil {
		fmt.Fprintln(os.Stderr, "compare:", err)
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch {
	case *rootOnly:
		err = study.EnsureRoot(ctx, cfg)
	case *boot != "":
		err = bootTraditional(ctx, cfg, *boot, *port)
	default:
		err = run(ctx, cfg, *out)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "compare:", err)
		os.Exit(1)
	}
}

// moduleRoot is the hull checkout compare runs in.
func moduleRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(filepath.Join(wd, "go.mod")); err != nil {
		return "", fmt.Errorf("run from the hull checkout (make compare): %w", err)
	}
	return wd, nil
}

// absolute makes the path flags absolute: the root is built by
// debootstrap and chroot, which get it as an argument.
func absolute(paths ...*string) error {
	for _, p := range paths {
		a, err := filepath.Abs(*p)
		if err != nil {
			return err
		}
		*p = a
	}
	return nil
}

func bootTraditional(ctx context.Context, cfg study.Config, app string, port int) error {
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	cfg.ModuleRoot = root
	guest := map[string]int{"redis": 6379, "http": 8080}[app]
	if guest == 0 {
		port = 0 // the probes listen on nothing
	}
	return study.BootTraditional(ctx, cfg, app, port, guest)
}

func run(ctx context.Context, cfg study.Config, out string) error {
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	cfg.ModuleRoot = root
	res, err := study.Run(ctx, cfg)
	if err != nil {
		return err
	}
	if err := res.WriteTable(os.Stdout); err != nil {
		return err
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	data, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	written := []string{filepath.Join(out, "result.json")}
	if err := os.WriteFile(written[0], append(data, '\n'), 0o644); err != nil {
		return err
	}
	for _, format := range []string{report.SVG, report.PNG} {
		p := filepath.Join(out, "compare."+format)
		f, err := os.Create(p)
		if err != nil {
			return err
		}
		err = res.WriteChart(f, format)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("writing %s: %w", p, err)
		}
		written = append(written, p)
	}
	// stderr: the table on stdout ends with the summary line.
	fmt.Fprintf(os.Stderr, "compare: wrote %s (%.0f s in all)\n", strings.Join(written, ", "), res.ElapsedSec)
	return nil
}
