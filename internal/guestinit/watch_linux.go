package guestinit

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hullvm/hull/internal/control"
	"github.com/hullvm/hull/internal/lockdown"
)

// maxReportsPerSyscall keeps a looping app from flooding the host.
const maxReportsPerSyscall = 20

// serveNotifications answers every syscall the filter sends to the init:
// it refuses it with EPERM first (the app is blocked until then) and then
// tells the host what was tried.
func serveNotifications(fd int, rules []lockdown.Rule, ctl *control.Conn) {
	counts := map[int32]int{}
	for {
		n, err := lockdown.RecvNotif(fd)
		if err != nil {
			return
		}
		detail := notifDetail(fd, n)
		lockdown.DenyNotif(fd, n.ID, unix.EPERM)
		counts[n.Nr]++
		if counts[n.Nr] > maxReportsPerSyscall {
			continue
		}
		name := lockdown.SyscallName(int(n.Nr))
		why := "not allowed"
		if r, ok := lockdown.Explain(rules, int(n.Nr)); ok && r.Why != "" {
			why = r.Why
		}
		text := fmt.Sprintf("app (pid %d) called %s%s: denied, %s", n.PID, name, detail, why)
		if counts[n.Nr] == maxReportsPerSyscall {
			text += " (further attempts not reported)"
		}
		ctl.Send(control.Msg{Type: control.TypeDenied, Syscall: name, Text: text, PID: int(n.PID)})
	}
}

// notifDetail reads the path argument of exec attempts from the caller's
// memory, checking afterwards that the caller still waits so the text
// belongs to this call.
func notifDetail(fd int, n *lockdown.Notif) string {
	var addr uint64
	switch int(n.Nr) {
	case unix.SYS_EXECVE:
		addr = n.Args[0]
	case unix.SYS_EXECVEAT:
		addr = n.Args[1]
	case unix.SYS_FINIT_MODULE, unix.SYS_PTRACE, unix.SYS_MOUNT:
		return ""
	default:
		return ""
	}
	mem, err := os.Open(fmt.Sprintf("/proc/%d/mem", n.PID))
	if err != nil {
		return ""
	}
	defer mem.Close()
	buf := make([]byte, 256)
	k, _ := mem.ReadAt(buf, int64(addr))
	if !lockdown.NotifValid(fd, n.ID) {
		return ""
	}
	s := buf[:k]
	for i, c := range s {
		if c == 0 {
			s = s[:i]
			break
		}
	}
	return fmt.Sprintf("(%q)", s)
}

// watchListeners reports each new listening socket, polling fast at
// first (so the host learns early that the app is ready) and slowly
// later.
func watchListeners(ctl *control.Conn) {
	seen := map[string]bool{}
	delay := 5 * time.Millisecond
	for {
		for _, l := range listeners() {
			key := l.proto + " " + l.addr.String()
			if seen[key] {
				continue
			}
			seen[key] = true
			ctl.Send(control.Msg{Type: control.TypeListen, Proto: l.proto, Addr: l.addr.Addr().String(), Port: int(l.addr.Port())})
		}
		time.Sleep(delay)
		if delay < time.Second {
			delay = delay * 5 / 4
		}
	}
}

type listener struct {
	proto string
	addr  netip.AddrPort
}

func listeners() []listener {
	var out []listener
	for _, src := range []struct{ file, proto, state string }{
		{"/proc/net/tcp", "tcp", "0A"}, {"/proc/net/tcp6", "tcp", "0A"},
		{"/proc/net/udp", "udp", "07"}, {"/proc/net/udp6", "udp", "07"},
	} {
		out = append(out, parseProcNet(src.file, src.proto, src.state)...)
	}
	return out
}

// parseProcNet reads /proc/net/{tcp,udp}[6] lines in state.
func parseProcNet(file, proto, state string) []listener {
	f, err := os.Open(file)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []listener
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 4 || fields[3] != state {
			continue
		}
		if ap, ok := parseHexAddrPort(fields[1]); ok {
			out = append(out, listener{proto, ap})
		}
	}
	return out
}

// parseHexAddrPort decodes the kernel's "0100007F:1F90": the address as
// 32-bit words in host (little-endian) order, the port big-endian hex.
func parseHexAddrPort(s string) (netip.AddrPort, bool) {
	a, p, ok := strings.Cut(s, ":")
	if !ok {
		return netip.AddrPort{}, false
	}
	raw, err := hex.DecodeString(a)
	if err != nil || (len(raw) != 4 && len(raw) != 16) {
		return netip.AddrPort{}, false
	}
	for i := 0; i < len(raw); i += 4 {
		raw[i], raw[i+1], raw[i+2], raw[i+3] = raw[i+3], raw[i+2], raw[i+1], raw[i]
	}
	port, err := strconv.ParseUint(p, 16, 16)
	if err != nil {
		return netip.AddrPort{}, false
	}
	addr, _ := netip.AddrFromSlice(raw)
	return netip.AddrPortFrom(addr.Unmap(), uint16(port)), true
}
