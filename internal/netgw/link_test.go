package netgw

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"go/build"
	"net"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hullvm/hull/internal/spec"
	"github.com/miekg/dns"
)

func TestHostileLinkPeerIsCut(t *testing.T) {
	dir := privateDir(t)
	var mu sync.Mutex
	var logs []string
	g, err := Start(context.Background(), Config{
		Listen: filepath.Join(dir, "net.sock"), ResolvConf: filepath.Join(dir, "none"),
		Logf: func(f string, a ...any) { mu.Lock(); logs = append(logs, fmt.Sprintf(f, a...)); mu.Unlock() },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	c, err := net.Dial("unix", filepath.Join(dir, "net.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// A runt frame is skipped; an absurd length ends the link.
	c.Write(binary.BigEndian.AppendUint32(nil, 3))
	c.Write([]byte{1, 2, 3})
	c.Write(binary.BigEndian.AppendUint32(nil, 1<<30))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Fatalf("read after a bogus frame length = %v; want the gateway to close the link", err)
	}
	waitFor(t, "link error logged", 2*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(logs) == 1 && strings.Contains(logs[0], "not a QEMU stream netdev")
	})
	if _, err := net.Dial("unix", filepath.Join(dir, "net.sock")); err == nil {
		t.Errorf("a second peer could connect; the gateway serves one guest")
	}
}

func TestStartWithCancelledContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	dir := privateDir(t)
	if _, err := Start(ctx, Config{Listen: filepath.Join(dir, "s")}); !errors.Is(err, context.Canceled) {
		t.Errorf("Start with a cancelled context = %v; want context.Canceled", err)
	}
}

func TestLearnedAddressExpires(t *testing.T) {
	up := startUpstream(t, testZone())
	web := newCountingServer(t, "web")
	var mu sync.Mutex
	now := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	env := startEnv(t, envOpts{
		upstream: up.addr,
		allow:    []string{"remote.test:80"},
		remap:    map[string]string{"192.0.2.10:80": web.Listener.Addr().String()},
		now:      clock,
	})
	if m, err := env.guest.query(t, "udp", "remote.test", dns.TypeA); err != nil || len(m.Answer) != 1 {
		t.Fatalf("resolving remote.test: %v, %v", m, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := env.guest.dial(ctx, "192.0.2.10:80")
	if err != nil {
		t.Fatalf("dial within the TTL: %v", err)
	}
	c.Close()
	mu.Lock()
	now = now.Add(301 * time.Second) // the answer's TTL is 300 s
	mu.Unlock()
	start := time.Now()
	_, err = env.guest.dial(ctx, "192.0.2.10:80")
	requireRefused(t, err, time.Since(start))
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("dial after expiry = %v; want ECONNREFUSED", err)
	}
}

// TestDependencies keeps the gateway usable on its own: it may use the
// policy and the spec, but not the runner, the CLI or QEMU code, which sit
// above it and call it.
func TestDependencies(t *testing.T) {
	const module = "github.com/hullvm/hull/"
	forbidden := []string{"internal/runner", "internal/cli", "internal/vmm", "internal/guestinit"}
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	seen := map[string]bool{}
	var walk func(pkg string)
	walk = func(pkg string) {
		if seen[pkg] {
			return
		}
		seen[pkg] = true
		rel := strings.TrimPrefix(pkg, module)
		for _, f := range forbidden {
			if rel == f || strings.HasPrefix(rel, f+"/") {
				t.Errorf("netgw depends on %s", pkg)
			}
		}
		bp, err := build.ImportDir(filepath.Join(root, filepath.FromSlash(rel)), 0)
		if err != nil {
			t.Fatalf("reading %s: %v", pkg, err)
		}
		for _, imp := range bp.Imports {
			if strings.HasPrefix(imp, module) {
				walk(imp)
			}
		}
	}
	walk(module + "internal/netgw")
}

func TestForwardFromSpec(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"8080:80", "127.0.0.1:8080:80/tcp"},
		{"0.0.0.0:5353:53/udp", "0.0.0.0:5353:53/udp"},
		{"[::1]:8443:443", "[::1]:8443:443/tcp"},
	} {
		p, err := spec.ParsePort(tt.in)
		if err != nil {
			t.Fatal(err)
		}
		f, err := ForwardFromSpec(p)
		if err != nil || f.String() != tt.want {
			t.Errorf("ForwardFromSpec(%q) = %v, %v; want %s", tt.in, f, err, tt.want)
		}
	}
	if _, err := ForwardFromSpec(spec.Port{Proto: "tcp", HostIP: "nope", HostPort: 1, GuestPort: 1}); err == nil {
		t.Errorf("bad host address accepted")
	}
}
