package traditional

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// RootOptions say which Debian root to build.
type RootOptions struct {
	// CacheDir holds the root ("rootfs") and its build logs.
	CacheDir string
	Suite    string   // e.g. "bookworm"
	Mirror   string   // e.g. "http://deb.debian.org/debian"
	Security string   // e.g. "http://deb.debian.org/debian-security"
	Packages []string // installed with apt-get on top of minbase
	// Log receives one line per step.
	Log io.Writer
}

// DefaultRootOptions is a bookworm minbase server with redis-server.
// kmod is there because every Debian server with a kernel has it (the
// kernel package depends on it) and stage 1 loads modules with its
// insmod; iproute2 brings the network up.
func DefaultRootOptions(cacheDir string) RootOptions {
	return RootOptions{
		CacheDir: cacheDir,
		Suite:    "bookworm",
		Mirror:   "http://deb.debian.org/debian",
		Security: "http://deb.debian.org/debian-security",
		Packages: []string{"redis-server", "iproute2", "kmod"},
		Log:      io.Discard,
	}
}

// recipeVersion changes when the build steps change meaning, so an old
// cached root is rebuilt.
const recipeVersion = 1

// Root is a built root filesystem.
type Root struct {
	Dir string `json:"-"`
	// Recipe is the digest of the options and steps it was built with.
	Recipe string `json:"recipe"`
	// Versions of the installed packages that matter to the comparison.
	Versions map[string]string `json:"versions"`
}

func (o RootOptions) recipe() string {
	b, _ := json.Marshal(struct {
		V                               int
		Suite, Mirror, Security         string
		Packages                        []string
		PolicyRC, Sources, Resolv, Host string
	}{recipeVersion, o.Suite, o.Mirror, o.Security, o.Packages, policyRC, o.sources(), resolvConf, hostsFile})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// stampFile, beside the root (not in it, so it is not scanned or
// booted), marks a finished root; it is written last.
const stampFile = "rootfs.json"

// policyRC keeps package scripts from starting services in the chroot.
const policyRC = "#!/bin/sh\n# Installed by hull's make compare while building; removed afterwards.\nexit 101\n"

// resolvConf is what DHCP on QEMU's user network would give the server.
const resolvConf = "nameserver 10.0.2.3\n"

const hostsFile = "127.0.0.1\tlocalhost\n127.0.1.1\ttraditional\n"

func (o RootOptions) sources() string {
	return fmt.Sprintf("deb %s %s main\ndeb %s %s-updates main\ndeb %s %s-security main\n",
		o.Mirror, o.Suite, o.Mirror, o.Suite, o.Security, o.Suite)
}

// EnsureRoot returns the cached root, building it first when it is
// missing or was built by another recipe. A failed build leaves nothing
// behind but its log.
func EnsureRoot(ctx context.Context, o RootOptions) (*Root, error) {
	dir := filepath.Join(o.CacheDir, "rootfs")
	stamp := filepath.Join(o.CacheDir, stampFile)
	recipe := o.recipe()
	if r, err := readStamp(stamp, dir); err == nil && r.Recipe == recipe {
		return r, nil
	}
	if _, err := exec.LookPath("debootstrap"); err != nil {
		return nil, errors.New("debootstrap is not installed: run make compare (it installs it) or apt-get install debootstrap")
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("building the traditional root needs root (debootstrap, chroot): run make compare as root")
	}
	if err := os.MkdirAll(o.CacheDir, 0o755); err != nil {
		return nil, err
	}
	logPath := filepath.Join(o.CacheDir, "rootfs-build.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	tmp := dir + ".tmp"
	if err := removeTree(tmp); err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			removeTree(tmp)
		}
	}()
	b := &rootBuilder{o: o, dir: tmp, log: logf}
	if err := b.build(ctx); err != nil {
		return nil, fmt.Errorf("building the traditional root (log: %s): %w", logPath, err)
	}
	r := &Root{Dir: dir, Recipe: recipe, Versions: b.versions}
	os.Remove(stamp)
	if err := removeTree(dir); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, dir); err != nil {
		return nil, err
	}
	ok = true
	data, _ := json.MarshalIndent(r, "", "  ")
	if err := os.WriteFile(stamp, data, 0o644); err != nil {
		return nil, err
	}
	return r, nil
}

func readStamp(stamp, dir string) (*Root, error) {
	b, err := os.ReadFile(stamp)
	if err != nil {
		return nil, err
	}
	var r Root
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, err
	}
	r.Dir = dir
	return &r, nil
}

type rootBuilder struct {
	o        RootOptions
	dir      string
	log      io.Writer
	versions map[string]string
}

func (b *rootBuilder) step(format string, a ...any) {
	fmt.Fprintf(b.o.Log, "traditional root: "+format+"\n", a...)
	fmt.Fprintf(b.log, "== "+format+"\n", a...)
}

func (b *rootBuilder) run(ctx context.Context, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = b.log, b.log
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8", "DEBIAN_FRONTEND=noninteractive"}
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
	}
	return nil
}

func (b *rootBuilder) chroot(ctx context.Context, args ...string) error {
	return b.run(ctx, "chroot", append([]string{b.dir}, args...)...)
}

func (b *rootBuilder) write(rel, content string, mode os.FileMode) error {
	p := filepath.Join(b.dir, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	os.Remove(p) // debootstrap may leave a symlink here
	return os.WriteFile(p, []byte(content), mode)
}

func (b *rootBuilder) build(ctx context.Context) error {
	b.step("debootstrap --variant=minbase %s from %s (about a minute)", b.o.Suite, b.o.Mirror)
	if err := b.run(ctx, "debootstrap", "--variant=minbase", b.o.Suite, b.dir, b.o.Mirror); err != nil {
		return err
	}
	for rel, content := range map[string]string{
		"etc/apt/sources.list": b.o.sources(),
		"usr/sbin/policy-rc.d": policyRC,
		// The host's resolver, for apt inside the chroot only.
		"etc/resolv.conf": hostResolvConf(),
	} {
		if err := b.write(rel, content, modeFor(rel)); err != nil {
			return err
		}
	}
	proc := filepath.Join(b.dir, "proc")
	if err := unix.Mount("proc", proc, "proc", 0, ""); err != nil {
		return fmt.Errorf("mounting proc in the chroot: %w", err)
	}
	defer unix.Unmount(proc, unix.MNT_DETACH)
	b.step("apt-get install %s (with the suite's updates and security fixes)", strings.Join(b.o.Packages, " "))
	steps := [][]string{
		{"apt-get", "update", "-q"},
		{"apt-get", "upgrade", "-y", "-q"},
		append([]string{"apt-get", "install", "-y", "-q"}, b.o.Packages...),
		{"apt-get", "clean"},
	}
	for _, s := range steps {
		if err := b.chroot(ctx, s...); err != nil {
			return err
		}
	}
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, "chroot", b.dir, "dpkg-query", "-W", "-f", "${Package} ${Version}\n")
	cmd.Stdout = &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("dpkg-query in the chroot: %w", err)
	}
	b.versions = map[string]string{}
	sc := bufio.NewScanner(&out)
	want := map[string]bool{"redis-server": true, "redis-tools": true, "iproute2": true, "kmod": true, "libc6": true, "bash": true, "dash": true}
	for sc.Scan() {
		if name, ver, ok := strings.Cut(sc.Text(), " "); ok && want[name] {
			b.versions[name] = ver
		}
	}
	if err := unix.Unmount(proc, 0); err != nil {
		return fmt.Errorf("unmounting the chroot's proc: %w", err)
	}
	b.step("dropping apt lists and caches, policy-rc.d; setting resolv.conf, hostname, hosts")
	lists, _ := filepath.Glob(filepath.Join(b.dir, "var/lib/apt/lists/*"))
	for _, p := range lists {
		if filepath.Base(p) == "lock" || filepath.Base(p) == "partial" {
			continue
		}
		os.RemoveAll(p)
	}
	if err := os.Remove(filepath.Join(b.dir, "usr/sbin/policy-rc.d")); err != nil {
		return err
	}
	for rel, content := range map[string]string{
		"etc/resolv.conf": resolvConf,
		"etc/hostname":    "traditional\n",
		"etc/hosts":       hostsFile,
	} {
		if err := b.write(rel, content, 0o644); err != nil {
			return err
		}
	}
	return nil
}

func modeFor(rel string) os.FileMode {
	if strings.HasSuffix(rel, "policy-rc.d") {
		return 0o755
	}
	return 0o644
}

func hostResolvConf() string {
	b, err := os.ReadFile("/etc/resolv.conf")
	if err != nil {
		return ""
	}
	return string(b)
}

// removeTree detaches any mount left under dir (an interrupted
// debootstrap leaves proc and sys mounted in its target) and removes it.
func removeTree(dir string) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	if mi, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
		var under []string
		for _, line := range strings.Split(string(mi), "\n") {
			f := strings.Fields(line)
			if len(f) > 4 && (f[4] == abs || strings.HasPrefix(f[4], abs+"/")) {
				under = append(under, f[4])
			}
		}
		// Deepest first.
		for i := len(under) - 1; i >= 0; i-- {
			if err := unix.Unmount(under[i], unix.MNT_DETACH); err != nil {
				return fmt.Errorf("unmounting %s before removing %s: %w", under[i], dir, err)
			}
		}
	}
	return os.RemoveAll(dir)
}
