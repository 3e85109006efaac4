package kernel

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// realDeb finds a real Debian cloud kernel package: $HULL_KERNEL_DEB, or
// the one the project's notes download into /tmp/k. Without one the test
// is skipped, except in CI, which must have it.
func realDeb(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("HULL_KERNEL_DEB"); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("HULL_KERNEL_DEB: %v", err)
		}
		return p
	}
	matches, _ := filepath.Glob("/tmp/k/linux-image-*-cloud-amd64_*_amd64.deb")
	if len(matches) > 0 {
		return matches[len(matches)-1]
	}
	const why = "no real kernel package: set HULL_KERNEL_DEB or run " +
		"`mkdir -p /tmp/k && cd /tmp/k && apt-get download $(apt-cache depends linux-image-cloud-amd64 | awk '/Depends: linux-image/{print $2; exit}')`"
	if os.Getenv("CI") == "true" {
		t.Fatal(why)
	}
	t.Skip(why)
	return ""
}

func TestImportRealDeb(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: importing a real kernel takes seconds")
	}
	deb := realDeb(t)
	s := newStore(t)
	start := time.Now()
	b, err := s.ImportDeb(context.Background(), deb, nil)
	if err != nil {
		t.Fatalf("ImportDeb(%s): %v", deb, err)
	}
	t.Logf("imported %s in %v: %s", filepath.Base(deb), time.Since(start).Round(time.Millisecond), b.Digest)
	for _, m := range b.Modules {
		t.Logf("  %-16s %7d bytes  depends %v", m.Name, m.Size, m.Depends)
	}

	checkLoadOrder(t, b)
	got := moduleNames(b)
	for _, want := range append(slices.Clone(DefaultModules), "virtio", "virtio_ring", "net_failover", "failover") {
		if !slices.Contains(got, want) {
			t.Errorf("module %s missing from %v", want, got)
		}
	}
	deps := map[string][]string{}
	for _, m := range b.Modules {
		deps[m.Name] = m.Depends
	}
	for name, want := range map[string][]string{
		"virtio_ring":  {},
		"virtio":       {"virtio_ring"},
		"virtio_mmio":  {"virtio", "virtio_ring"},
		"virtio_net":   {"net_failover", "virtio", "virtio_ring"},
		"net_failover": {"failover"},
	} {
		if !slices.Equal(deps[name], want) {
			t.Errorf("%s depends on %v, want %v", name, deps[name], want)
		}
	}
	for option, want := range map[string]string{"CONFIG_VIRTIO_MMIO": "m", "CONFIG_VIRTIO": "m", "CONFIG_64BIT": "y"} {
		if got := b.ConfigValue(option); got != want {
			t.Errorf("ConfigValue(%q) = %q, want %q", option, got, want)
		}
	}
	if b.Release == "" || b.Name != "debian-"+b.Release || b.KernelSize < 1<<20 {
		t.Errorf("bundle = %+v", b)
	}
	if err := b.Verify(); err != nil {
		t.Error(err)
	}
	again, err := s.ImportDeb(context.Background(), deb, nil)
	if err != nil || again.Digest != b.Digest {
		t.Errorf("re-import = %v, %v; want digest %s", again, err, b.Digest)
	}
}
