package guestinit

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hullvm/hull/internal/manifest"
)

// loadModules loads the image's kernel modules in manifest order (the
// builder put every module after its dependencies).
func loadModules(mods []string, logf func(string, ...any)) error {
	for _, p := range mods {
		f, err := os.Open(p)
		if err != nil {
			return fmt.Errorf("opening module %s: %w", p, err)
		}
		err = unix.FinitModule(int(f.Fd()), "", 0)
		f.Close()
		if err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("loading module %s: %w", path.Base(p), err)
		}
		logf("loaded %s", path.Base(p))
		// The file lives in the initramfs, i.e. in guest RAM, for the
		// whole run unless it goes: the kernel holds its own copy now.
		if err := os.Remove(p); err != nil {
			logf("removing %s: %v", p, err)
		}
	}
	return nil
}

// networkUp configures lo and eth0 statically over netlink.
func networkUp(n manifest.Network) error {
	if err := linkUp("lo"); err != nil {
		return err
	}
	if n.Address == "" {
		return nil
	}
	pfx, err := netip.ParsePrefix(n.Address)
	if err != nil {
		return fmt.Errorf("manifest network address %q: %w", n.Address, err)
	}
	var idx int
	deadline := time.Now().Add(3 * time.Second)
	for {
		idx, err = ifIndex("eth0")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("network interface eth0 did not appear: %w", err)
		}
		time.Sleep(2 * time.Millisecond)
	}
	nl, err := newNetlink()
	if err != nil {
		return err
	}
	defer nl.close()
	addr := pfx.Addr().As4()
	// struct ifaddrmsg + IFA_LOCAL + IFA_ADDRESS
	msg := []byte{unix.AF_INET, byte(pfx.Bits()), 0, unix.RT_SCOPE_UNIVERSE, 0, 0, 0, 0}
	binary.LittleEndian.PutUint32(msg[4:], uint32(idx))
	msg = appendAttr(msg, unix.IFA_LOCAL, addr[:])
	msg = appendAttr(msg, unix.IFA_ADDRESS, addr[:])
	if err := nl.request(unix.RTM_NEWADDR, unix.NLM_F_CREATE|unix.NLM_F_EXCL, msg); err != nil {
		return fmt.Errorf("adding address %s to eth0: %w", n.Address, err)
	}
	if err := linkUp("eth0"); err != nil {
		return err
	}
	if n.Gateway != "" {
		gw, err := netip.ParseAddr(n.Gateway)
		if err != nil {
			return fmt.Errorf("manifest gateway %q: %w", n.Gateway, err)
		}
		g := gw.As4()
		// struct rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags(4)
		rt := []byte{unix.AF_INET, 0, 0, 0, unix.RT_TABLE_MAIN, unix.RTPROT_BOOT, unix.RT_SCOPE_UNIVERSE, unix.RTN_UNICAST, 0, 0, 0, 0}
		rt = appendAttr(rt, unix.RTA_GATEWAY, g[:])
		oif := make([]byte, 4)
		binary.LittleEndian.PutUint32(oif, uint32(idx))
		rt = appendAttr(rt, unix.RTA_OIF, oif)
		if err := nl.request(unix.RTM_NEWROUTE, unix.NLM_F_CREATE|unix.NLM_F_EXCL, rt); err != nil {
			return fmt.Errorf("adding default route via %s: %w", n.Gateway, err)
		}
	}
	return nil
}

func ifIndex(name string) (int, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return 0, err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFINDEX, ifr); err != nil {
		return 0, err
	}
	return int(ifr.Uint32()), nil
}

func linkUp(name string) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("bringing %s up: %w", name, err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("bringing %s up: %w", name, err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("bringing %s up: %w", name, err)
	}
	return nil
}

type netlinkConn struct {
	fd  int
	seq uint32
}

func newNetlink() (*netlinkConn, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("opening netlink: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("binding netlink: %w", err)
	}
	return &netlinkConn{fd: fd}, nil
}

func (c *netlinkConn) close() { unix.Close(c.fd) }

func appendAttr(b []byte, typ uint16, data []byte) []byte {
	l := 4 + len(data)
	hdr := make([]byte, 4)
	binary.LittleEndian.PutUint16(hdr, uint16(l))
	binary.LittleEndian.PutUint16(hdr[2:], typ)
	b = append(b, hdr...)
	b = append(b, data...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

// request sends one message and waits for its acknowledgement.
func (c *netlinkConn) request(typ uint16, flags uint16, payload []byte) error {
	c.seq++
	msg := make([]byte, unix.NLMSG_HDRLEN, unix.NLMSG_HDRLEN+len(payload))
	binary.LittleEndian.PutUint32(msg[0:], uint32(unix.NLMSG_HDRLEN+len(payload)))
	binary.LittleEndian.PutUint16(msg[4:], typ)
	binary.LittleEndian.PutUint16(msg[6:], flags|unix.NLM_F_REQUEST|unix.NLM_F_ACK)
	binary.LittleEndian.PutUint32(msg[8:], c.seq)
	msg = append(msg, payload...)
	if err := unix.Sendto(c.fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return err
	}
	buf := make([]byte, 8192)
	for {
		n, _, err := unix.Recvfrom(c.fd, buf, 0)
		if err != nil {
			return err
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return err
		}
		for _, m := range msgs {
			if m.Header.Seq != c.seq || m.Header.Type != unix.NLMSG_ERROR {
				continue
			}
			if len(m.Data) < 4 {
				return errors.New("short netlink ack")
			}
			if code := int32(binary.LittleEndian.Uint32(m.Data)); code != 0 {
				return unix.Errno(-code)
			}
			return nil
		}
	}
}

// appDiskDevice is the first virtio block device: the runner attaches
// the app disk and nothing else.
const appDiskDevice = "vda"

// mountAppDisk mounts the read-only EROFS app disk at the app root.
func mountAppDisk(m *manifest.Manifest) error {
	dev := "/dev/" + appDiskDevice
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := os.Stat(dev); err == nil {
			break
		}
		if _, err := os.Stat("/sys/block/" + appDiskDevice + "/dev"); err == nil {
			if err := mknodBlock(appDiskDevice, dev); err != nil {
				return err
			}
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the app disk (%s) did not appear", dev)
		}
		time.Sleep(2 * time.Millisecond)
	}
	fstype := m.AppDisk.FS
	if fstype == "" {
		fstype = "erofs"
	}
	if err := unix.Mount(dev, manifest.AppRoot, fstype, unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV, ""); err != nil {
		return fmt.Errorf("mounting the app disk (%s on %s): %w", fstype, dev, err)
	}
	return nil
}

func mknodBlock(name, dev string) error {
	b, err := os.ReadFile("/sys/block/" + name + "/dev")
	if err != nil {
		return err
	}
	var maj, min uint32
	if _, err := fmt.Sscanf(string(b), "%d:%d", &maj, &min); err != nil {
		return fmt.Errorf("%s: bad dev %q", name, b)
	}
	if err := unix.Mknod(dev, unix.S_IFBLK|0o600, int(unix.Mkdev(maj, min))); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("creating %s: %w", dev, err)
	}
	return nil
}

// prepareRoot builds the app's view on top of the read-only app disk:
// proc (other users' processes invisible, so PID 1 is), a tmpfs /dev with
// only harmless nodes, and a capped noexec /tmp.
func prepareRoot(m *manifest.Manifest) error {
	root := manifest.AppRoot
	steps := []struct {
		what string
		do   func() error
	}{
		{"mount the app disk", func() error { return mountAppDisk(m) }},
		{"mount /proc", func() error {
			err := unix.Mount("proc", root+"/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "hidepid=invisible")
			if errors.Is(err, unix.EINVAL) {
				err = unix.Mount("proc", root+"/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "hidepid=2")
			}
			return err
		}},
		{"mount /dev", func() error { return mountDev(root + "/dev") }},
		{"mount /tmp", func() error {
			return unix.Mount("tmpfs", root+"/tmp", "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC,
				fmt.Sprintf("mode=1777,size=%d", m.TmpSize))
		}},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			return fmt.Errorf("%s: %w", s.what, err)
		}
	}
	return nil
}

func mountDev(dev string) error {
	if err := unix.Mount("tmpfs", dev, "tmpfs", unix.MS_NOSUID|unix.MS_NOEXEC, "mode=0755,size=64k,nr_inodes=64"); err != nil {
		return err
	}
	nodes := []struct {
		name     string
		maj, min uint32
	}{{"null", 1, 3}, {"zero", 1, 5}, {"full", 1, 7}, {"random", 1, 8}, {"urandom", 1, 9}, {"tty", 5, 0}}
	for _, n := range nodes {
		p := dev + "/" + n.name
		if err := unix.Mknod(p, unix.S_IFCHR|0o666, int(unix.Mkdev(n.maj, n.min))); err != nil {
			return fmt.Errorf("creating %s: %w", p, err)
		}
		// mknod's mode is filtered by the umask; set it exactly.
		if err := unix.Chmod(p, 0o666); err != nil {
			return err
		}
	}
	for name, target := range map[string]string{
		"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2",
	} {
		if err := unix.Symlink(target, dev+"/"+name); err != nil {
			return err
		}
	}
	return unix.Mount("", dev, "", unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NOEXEC, "mode=0755,size=64k,nr_inodes=64")
}
