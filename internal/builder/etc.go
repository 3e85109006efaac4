package builder

import (
	"fmt"
	"os"
	"path"
	"strings"

	"github.com/hullvm/hull/internal/elfdeps"
	"github.com/hullvm/hull/internal/image"
	"github.com/hullvm/hull/internal/manifest"
	"github.com/hullvm/hull/internal/spec"
)

// CA bundle locations. The Debian file is the source; the other names are
// where Go, OpenSSL and other distributions' builds look for it.
const hostCABundle = "/etc/ssl/certs/ca-certificates.crt"

var caLinks = []struct{ path, why string }{
	{"/etc/ssl/cert.pem", "CA bundle at the path OpenSSL/LibreSSL builds of other distributions use"},
	{"/usr/lib/ssl/cert.pem", "CA bundle at Debian OpenSSL's default CAfile (OPENSSLDIR/cert.pem)"},
	{"/etc/pki/tls/certs/ca-bundle.crt", "CA bundle at the Red Hat path, which Go and curl builds also try"},
}

// addGenerated adds the files hull writes itself: mount points, the app
// user, name resolution config, CA certificates and zoneinfo.
func addGenerated(t *image.Tree, s *spec.Spec, c *elfdeps.Closure) ([]string, error) {
	var warnings []string
	add := func(e image.Entry) error {
		if e.Origin == 0 {
			e.Origin = image.Generated
		}
		return t.Add(e)
	}
	file := func(p, reason string, data string) error {
		return add(image.Entry{Path: p, Type: image.File, Perm: 0o444, Data: []byte(data), Reason: "generated: " + reason})
	}
	dir := func(p, reason string) error {
		return add(image.Entry{Path: p, Type: image.Dir, Perm: 0o755, Reason: reason})
	}
	steps := []func() error{
		func() error { return dir("/proc", "mount point: proc at boot (other processes hidden)") },
		func() error {
			return dir("/dev", "mount point: minimal /dev at boot (null, zero, full, random, urandom, tty)")
		},
		func() error {
			return dir("/tmp", fmt.Sprintf("mount point: tmpfs at boot (%s, noexec, nosuid, nodev)", s.TmpSize))
		},
		func() error { return dir(manifest.AppHome, "home of the app user (read-only; write to /tmp)") },
		func() error {
			return file("/etc/passwd", "the app user (uid 1000): no password, no login shell",
				fmt.Sprintf("%s:*:%d:%d:hull app:%s:/nonexistent\n", manifest.AppUser, manifest.AppUID, manifest.AppGID, manifest.AppHome))
		},
		func() error {
			return file("/etc/group", "the app user's group", fmt.Sprintf("%s:*:%d:\n", manifest.AppUser, manifest.AppGID))
		},
		func() error {
			return file("/etc/hosts", "hosts: localhost, the hostname and "+manifest.HostAlias,
				fmt.Sprintf("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n%s\t%s\n%s\t%s\n",
					manifest.GuestIP, s.Hostname, manifest.GatewayIP, manifest.HostAlias))
		},
		func() error {
			return file("/etc/resolv.conf", "resolver config (DNS answered by the hull gateway)",
				fmt.Sprintf("nameserver %s\noptions timeout:2 attempts:2\n", manifest.DNSIP))
		},
		func() error { return file("/etc/hostname", "the hostname", s.Hostname+"\n") },
	}
	if c.Libc == "glibc" {
		steps = append(steps, func() error {
			return file("/etc/nsswitch.conf", "name service switch for glibc (files, then dns)",
				"passwd: files\ngroup: files\nshadow: files\nhosts: files dns\nnetworks: files\nprotocols: files\nservices: files\n")
		})
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return nil, err
		}
	}
	if s.WantCACerts() {
		host := path.Join(s.Sysroot, hostCABundle)
		if _, err := os.Stat(host); err != nil {
			warnings = append(warnings, fmt.Sprintf("no CA bundle at %s (install ca-certificates): TLS clients in the app will not trust any server", host))
		} else {
			if err := add(image.Entry{Path: hostCABundle, Type: image.File, Perm: 0o444, Src: host,
				Reason: "host CA bundle for TLS (set ca_certs: false to leave out)"}); err != nil {
				return nil, err
			}
			for _, l := range caLinks {
				if err := add(image.Entry{Path: l.path, Type: image.Symlink, Link: hostCABundle, Reason: l.why}); err != nil {
					return nil, err
				}
			}
		}
	}
	if tz := envValue(s.Env, "TZ"); tz != "" {
		w, err := addZoneinfo(t, s.Sysroot, tz)
		if err != nil {
			return nil, err
		}
		warnings = append(warnings, w...)
	}
	return warnings, nil
}

func envValue(env []string, key string) string {
	v := ""
	for _, kv := range env {
		if k, val, ok := strings.Cut(kv, "="); ok && k == key {
			v = val
		}
	}
	return v
}

// addZoneinfo copies the zone TZ names and points /etc/localtime at it.
func addZoneinfo(t *image.Tree, root, tz string) ([]string, error) {
	zone := strings.TrimPrefix(tz, ":")
	if zone == "" || strings.Contains(zone, "..") || path.IsAbs(zone) && !strings.HasPrefix(zone, "/usr/share/zoneinfo/") {
		return []string{fmt.Sprintf("TZ=%s is not a zone name under /usr/share/zoneinfo; no zoneinfo added", tz)}, nil
	}
	zone = strings.TrimPrefix(zone, "/usr/share/zoneinfo/")
	guest := path.Join("/usr/share/zoneinfo", zone)
	host := path.Join(root, guest)
	st, err := os.Stat(host)
	if err != nil || !st.Mode().IsRegular() {
		if strings.ContainsAny(zone, "+-0123456789") && !strings.Contains(zone, "/") {
			// POSIX TZ strings such as UTC0 or EST5EDT need no file.
			return nil, nil
		}
		return nil, fmt.Errorf("env TZ=%s: no zone file %s on the build host (install tzdata or fix the name)", tz, host)
	}
	if err := t.Add(image.Entry{Path: guest, Type: image.File, Perm: 0o444, Src: host, Origin: image.Generated,
		Reason: "zoneinfo for TZ=" + tz}); err != nil {
		return nil, err
	}
	return nil, t.Add(image.Entry{Path: "/etc/localtime", Type: image.Symlink, Link: guest, Origin: image.Generated,
		Reason: "generated: local time zone (TZ=" + tz + ")"})
}
