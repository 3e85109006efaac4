package netgw

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
	"gvisor.dev/gvisor/pkg/waiter"
)

// countingServer is an HTTP server on host loopback that counts the
// connections it accepted.
type countingServer struct {
	*httptest.Server
	conns atomic.Int64
}

func newCountingServer(t testing.TB, body string) *countingServer {
	t.Helper()
	cs := &countingServer{}
	cs.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, body)
	}))
	cs.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			cs.conns.Add(1)
		}
	}
	cs.Start()
	t.Cleanup(cs.Close)
	return cs
}

func (cs *countingServer) port() uint16 {
	return netip.MustParseAddrPort(cs.Listener.Addr().String()).Port()
}

func TestEgressThroughLoopbackAlias(t *testing.T) {
	allowed := newCountingServer(t, "hello from the host")
	undeclared := newCountingServer(t, "must not be reached")
	env := startEnv(t, envOpts{allow: []string{fmt.Sprintf("127.0.0.1/32:%d", allowed.port())}})
	client := env.guest.httpClient()

	t.Run("allowed port answers 200", func(t *testing.T) {
		resp, err := client.Get(fmt.Sprintf("http://10.0.2.2:%d/", allowed.port()))
		if err != nil {
			t.Fatalf("GET through alias: %v", err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("status = %d; want 200", resp.StatusCode)
		}
		if got := readAllString(t, resp.Body); got != "hello from the host" {
			t.Errorf("body = %q; want %q", got, "hello from the host")
		}
	})

	t.Run("undeclared port refused fast", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		start := time.Now()
		_, err := env.guest.dial(ctx, fmt.Sprintf("10.0.2.2:%d", undeclared.port()))
		requireRefused(t, err, time.Since(start))
		if n := undeclared.conns.Load(); n != 0 {
			t.Errorf("undeclared server saw %d connections; want 0 (policy is checked before dialling)", n)
		}
	})

	t.Run("metadata address refused", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		start := time.Now()
		_, err := env.guest.dial(ctx, "169.254.169.254:80")
		requireRefused(t, err, time.Since(start))
	})

	t.Run("gateway's own ports other than DNS refused", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		start := time.Now()
		_, err := env.guest.dial(ctx, "10.0.2.3:80")
		requireRefused(t, err, time.Since(start))
	})

	for _, d := range env.dials() {
		if !strings.HasSuffix(d, fmt.Sprintf(":%d", allowed.port())) {
			t.Errorf("the gateway dialled %q on the host; only the allowed port may be dialled", d)
		}
	}
	waitFor(t, "denials reported", 2*time.Second, func() bool { return len(env.denials()) >= 2 })
	var targets []string
	for _, f := range env.denials() {
		targets = append(targets, f.Target())
	}
	for _, want := range []string{fmt.Sprintf("tcp 127.0.0.1:%d (host.hull.internal)", undeclared.port()), "tcp 169.254.169.254:80"} {
		if !contains(targets, want) {
			t.Errorf("OnDeny targets = %q; want one %q", targets, want)
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// hostUDPEcho runs a UDP echo server on host loopback and counts datagrams.
func hostUDPEcho(t testing.TB) (netip.AddrPort, *atomic.Int64) {
	t.Helper()
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	var n atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 65535)
		for {
			k, from, err := pc.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			n.Add(1)
			pc.WriteToUDPAddrPort(buf[:k], from)
		}
	}()
	t.Cleanup(func() { pc.Close(); wg.Wait() })
	return pc.LocalAddr().(*net.UDPAddr).AddrPort(), &n
}

func TestUDPEgress(t *testing.T) {
	allowed, _ := hostUDPEcho(t)
	undeclared, undeclaredHits := hostUDPEcho(t)
	env := startEnv(t, envOpts{allow: []string{fmt.Sprintf("127.0.0.1/32:%d/udp", allowed.Port())}})

	t.Run("allowed echo", func(t *testing.T) {
		got, err := env.guest.sendUDP(t, netip.AddrPortFrom(DefaultGatewayIP, allowed.Port()), []byte("ping"), 5*time.Second)
		if err != nil || string(got) != "ping" {
			t.Fatalf("echo through alias = %q, %v; want \"ping\"", got, err)
		}
	})
	t.Run("undeclared port dropped", func(t *testing.T) {
		for range 3 {
			got, err := env.guest.sendUDP(t, netip.AddrPortFrom(DefaultGatewayIP, undeclared.Port()), []byte("ping"), 300*time.Millisecond)
			if err == nil {
				t.Fatalf("got reply %q from an undeclared UDP port; want the datagram dropped", got)
			}
		}
		if n := undeclaredHits.Load(); n != 0 {
			t.Errorf("undeclared server received %d datagrams; want 0", n)
		}
		var n int
		for _, f := range env.denials() {
			if f.Proto == "udp" && f.Remote.Port() == undeclared.Port() {
				n++
			}
		}
		if n != 1 {
			t.Errorf("denied UDP flow reported %d times for 3 datagrams; want once", n)
		}
	})
	t.Run("dns to another server dropped", func(t *testing.T) {
		if _, err := env.guest.sendUDP(t, netip.MustParseAddrPort("8.8.8.8:53"), []byte("x"), 300*time.Millisecond); err == nil {
			t.Fatalf("got an answer from 8.8.8.8:53; want the datagram dropped")
		}
		for _, d := range env.dials() {
			if strings.Contains(d, "8.8.8.8") {
				t.Errorf("gateway dialled %s", d)
			}
		}
	})
}

func TestUDPIngressEcho(t *testing.T) {
	env := startEnv(t, envOpts{forwards: []Forward{{Proto: "udp", Host: netip.MustParseAddrPort("127.0.0.1:0"), GuestPort: 7}}})
	env.guest.udpEcho(t, 7)
	host := env.gw.ForwardAddrs()[0]
	for i := range 3 { // three clients, each its own session
		c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(host))
		if err != nil {
			t.Fatal(err)
		}
		for j := range 5 {
			msg := fmt.Sprintf("client %d datagram %d", i, j)
			c.Write([]byte(msg))
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			buf := make([]byte, 1500)
			n, err := c.Read(buf)
			if err != nil || string(buf[:n]) != msg {
				t.Fatalf("echo = %q, %v; want %q", buf[:n], err, msg)
			}
		}
		c.Close()
	}
}

func TestTCPIngress(t *testing.T) {
	env := startEnv(t, envOpts{forwards: []Forward{{Proto: "tcp", Host: netip.MustParseAddrPort("127.0.0.1:0"), GuestPort: 8080}}})
	ln := env.guest.listenTCP(t, 8080)
	host := env.gw.ForwardAddrs()[0]

	const size = 100 << 20
	var srv sync.WaitGroup
	srv.Add(1)
	go func() {
		defer srv.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			srv.Add(1)
			go func() {
				defer srv.Done()
				defer c.Close()
				br := bufio.NewReader(c)
				cmd, _ := br.ReadString('\n')
				switch strings.TrimSpace(cmd) {
				case "upload":
					// Half-close: read to EOF, then answer on the same connection.
					h := sha256.New()
					n, _ := io.Copy(h, br)
					fmt.Fprintf(c, "%d %x\n", n, h.Sum(nil))
				case "download":
					io.Copy(c, io.LimitReader(newPRNG(1), size))
				}
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); srv.Wait() })

	t.Run("half-close", func(t *testing.T) {
		c, err := net.Dial("tcp", host.String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		payload := []byte("upload\nsome bytes, then EOF")
		c.Write(payload)
		c.(*net.TCPConn).CloseWrite()
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		got := readAllString(t, c)
		body := payload[len("upload\n"):]
		want := fmt.Sprintf("%d %x", len(body), sha256.Sum256(body))
		if got != want {
			t.Errorf("after half-close the guest answered %q; want %q", got, want)
		}
	})

	t.Run("100 MiB download byte-identical", func(t *testing.T) {
		c, err := net.Dial("tcp", host.String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(50 * time.Second))
		fmt.Fprintf(c, "download\n")
		start := time.Now()
		h := sha256.New()
		n, err := io.Copy(h, c)
		if err != nil {
			t.Fatalf("download: %v after %d bytes", err, n)
		}
		want := sha256.New()
		io.Copy(want, io.LimitReader(newPRNG(1), size))
		if n != size || string(h.Sum(nil)) != string(want.Sum(nil)) {
			t.Fatalf("downloaded %d bytes, sha256 %x; want %d bytes, sha256 %x", n, h.Sum(nil), size, want.Sum(nil))
		}
		t.Logf("100 MiB in %v (%.0f MB/s)", time.Since(start), float64(size)/1e6/time.Since(start).Seconds())
	})

	t.Run("guest port closed resets client", func(t *testing.T) {
		env2 := startEnv(t, envOpts{forwards: []Forward{{Proto: "tcp", Host: netip.MustParseAddrPort("127.0.0.1:0"), GuestPort: 9}}})
		c, err := net.Dial("tcp", env2.gw.ForwardAddrs()[0].String())
		if errors.Is(err, syscall.ECONNRESET) {
			return // the reset overtook connect
		}
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = c.Read(make([]byte, 1))
		if err == nil || isTimeout(err) {
			t.Fatalf("read from a forward to a closed guest port = %v; want EOF or reset", err)
		}
	})
}

// newPRNG is a deterministic byte stream for transfer tests.
func newPRNG(seed uint64) io.Reader { return &prng{r: rand.NewChaCha8([32]byte{byte(seed)})} }

type prng struct{ r *rand.ChaCha8 }

func (p *prng) Read(b []byte) (int, error) { return p.r.Read(b) }

func TestICMPEchoDenied(t *testing.T) {
	env := startEnv(t, envOpts{allow: []string{"0.0.0.0/0:1-65535"}})
	ping := func(dst string) bool {
		var wq waiter.Queue
		ep, terr := env.guest.s.NewEndpoint(icmp.ProtocolNumber4, ipv4.ProtocolNumber, &wq)
		if terr != nil {
			t.Fatalf("icmp endpoint: %v", netErr(terr))
		}
		defer ep.Close()
		entry, ch := waiter.NewChannelEntry(waiter.ReadableEvents)
		wq.EventRegister(&entry)
		defer wq.EventUnregister(&entry)
		echo := make(header.ICMPv4, header.ICMPv4MinimumSize+4)
		echo.SetType(header.ICMPv4Echo)
		copy(echo.Payload(), "ping")
		var r strings.Reader
		r.Reset(string(echo))
		to := fullAddr(netip.MustParseAddrPort(dst + ":0"))
		if _, terr := ep.Write(&r, tcpip.WriteOptions{To: &to}); terr != nil {
			t.Fatalf("ping write: %v", netErr(terr))
		}
		select {
		case <-ch:
			return true
		case <-time.After(500 * time.Millisecond):
			return false
		}
	}
	if !ping("10.0.2.2") {
		t.Errorf("ping 10.0.2.2 got no reply; the gateway answers pings to itself")
	}
	if ping("8.8.8.8") {
		t.Errorf("ping 8.8.8.8 got a reply; want ICMP echo out denied")
	}
	waitFor(t, "icmp denial", 2*time.Second, func() bool {
		for _, f := range env.denials() {
			if f.Target() == "icmp 8.8.8.8" {
				return true
			}
		}
		return false
	})
}

func TestFlowLog(t *testing.T) {
	srv := newCountingServer(t, "ok")
	env := startEnv(t, envOpts{
		allow:    []string{fmt.Sprintf("127.0.0.1/32:%d", srv.port())},
		forwards: []Forward{{Proto: "tcp", Host: netip.MustParseAddrPort("127.0.0.1:0"), GuestPort: 80}},
	})
	resp, err := env.guest.httpClient().Get(fmt.Sprintf("http://10.0.2.2:%d/", srv.port()))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	env.guest.dial(ctx, "169.254.169.254:80")
	env.guest.query(t, "udp", "blocked.test", 1)

	type line struct {
		Time      time.Time `json:"time"`
		Direction string    `json:"direction"`
		Proto     string    `json:"proto"`
		Guest     string    `json:"guest"`
		Remote    string    `json:"remote"`
		Name      string    `json:"name"`
		Verdict   string    `json:"verdict"`
		Rule      string    `json:"rule"`
		Reason    string    `json:"reason"`
		BytesOut  *int64    `json:"bytes_out"`
		BytesIn   *int64    `json:"bytes_in"`
		Duration  *float64  `json:"duration_ms"`
	}
	var lines []line
	waitFor(t, "three flow log lines", 5*time.Second, func() bool {
		return strings.Count(env.log.String(), "\n") >= 3
	})
	for _, l := range strings.Split(strings.TrimSpace(env.log.String()), "\n") {
		var x line
		if err := json.Unmarshal([]byte(l), &x); err != nil {
			t.Fatalf("flow log line %q is not JSON: %v", l, err)
		}
		if x.Time.IsZero() || x.Direction == "" || x.Proto == "" || x.Guest == "" || x.Remote == "" || x.Verdict == "" || x.BytesOut == nil || x.BytesIn == nil || x.Duration == nil {
			t.Errorf("flow log line %q lacks a field", l)
		}
		lines = append(lines, x)
	}
	find := func(pred func(line) bool) *line {
		for i := range lines {
			if pred(lines[i]) {
				return &lines[i]
			}
		}
		return nil
	}
	if l := find(func(l line) bool { return l.Verdict == "allow" && l.Proto == "tcp" && l.Direction == "egress" }); l == nil {
		t.Errorf("no allowed tcp egress line in %s", env.log)
	} else {
		if l.Rule != fmt.Sprintf("127.0.0.1/32:%d/tcp", srv.port()) || l.Remote != fmt.Sprintf("127.0.0.1:%d", srv.port()) || l.Name != HostAlias {
			t.Errorf("allowed line = %+v; want rule 127.0.0.1/32:%d/tcp, remote 127.0.0.1:%[2]d, name %s", *l, srv.port(), HostAlias)
		}
		if *l.BytesOut == 0 || *l.BytesIn == 0 {
			t.Errorf("allowed line counts %d bytes out, %d in; want both > 0", *l.BytesOut, *l.BytesIn)
		}
	}
	if l := find(func(l line) bool { return l.Verdict == "deny" && l.Remote == "169.254.169.254:80" }); l == nil || l.Reason == "" {
		t.Errorf("no denied metadata line with a reason in %s", env.log)
	}
	if l := find(func(l line) bool { return l.Verdict == "deny" && l.Name == "blocked.test" }); l == nil {
		t.Errorf("no denied DNS line for blocked.test in %s", env.log)
	}
	s := env.gw.Summary()
	if s.Allowed != 1 || s.Denied != 2 {
		t.Errorf("Summary = %+v; want 1 allowed, 2 denied", s)
	}
	want := "egress: 1 allowed, 2 denied: dns blocked.test, tcp 169.254.169.254:80"
	if got := s.String(); got != want {
		t.Errorf("Summary.String() = %q; want %q", got, want)
	}
}

func TestStartErrors(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	busyAddr := netip.MustParseAddrPort(busy.Addr().String())

	dir := privateDir(t)
	open := filepath.Join(dir, "open")
	os.Mkdir(open, 0o755)
	os.Chmod(open, 0o755)

	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no socket", Config{}, "no socket path"},
		{"dir not private", Config{Listen: filepath.Join(open, "net.sock")}, "0700"},
		{"dir missing", Config{Listen: filepath.Join(dir, "nope", "net.sock")}, "socket directory"},
		{"port in use", Config{Listen: filepath.Join(dir, "a.sock"), Forwards: []Forward{{Proto: "tcp", Host: busyAddr, GuestPort: 80}}},
			fmt.Sprintf("host port %d/tcp on 127.0.0.1 is already in use", busyAddr.Port())},
		{"bad proto", Config{Listen: filepath.Join(dir, "b.sock"), Forwards: []Forward{{Proto: "sctp", Host: busyAddr, GuestPort: 80}}}, "protocol"},
		{"ipv6 guest", Config{Listen: filepath.Join(dir, "c.sock"), GuestIP: netip.MustParseAddr("fd00::2")}, "IPv4 only"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.ResolvConf = filepath.Join(dir, "none")
			g, err := Start(context.Background(), tt.cfg)
			if err == nil {
				g.Close()
				t.Fatalf("Start succeeded; want an error containing %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Start error = %q; want it to contain %q", err, tt.want)
			}
		})
	}
	t.Run("port in use is EADDRINUSE", func(t *testing.T) {
		_, err := Start(context.Background(), Config{Listen: filepath.Join(dir, "d.sock"), ResolvConf: filepath.Join(dir, "none"),
			Forwards: []Forward{{Proto: "tcp", Host: busyAddr, GuestPort: 80}}})
		if !errors.Is(err, syscall.EADDRINUSE) {
			t.Errorf("error %v does not wrap EADDRINUSE", err)
		}
		if _, statErr := os.Stat(filepath.Join(dir, "d.sock")); !os.IsNotExist(statErr) {
			t.Errorf("failed Start left its socket behind")
		}
	})
}

func TestSocketModeAndLifecycle(t *testing.T) {
	dir := privateDir(t)
	sock := filepath.Join(dir, "net.sock")
	ctx, cancel := context.WithCancel(context.Background())
	g, err := Start(ctx, Config{Listen: sock, ResolvConf: filepath.Join(dir, "none")})
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode = %v; want a socket with 0600", fi.Mode())
	}
	cancel() // cancelling the Start context stops the gateway
	waitFor(t, "socket removed after cancel", 5*time.Second, func() bool {
		_, err := os.Stat(sock)
		return os.IsNotExist(err)
	})
	if err := g.Close(); err != nil {
		t.Errorf("second Close = %v; want nil", err)
	}
}

func TestHostRulesNeedUpstream(t *testing.T) {
	env := func() error {
		dir := privateDir(t)
		pol := mustPolicy(t, "api.example.com:443")
		g, err := Start(context.Background(), Config{Listen: filepath.Join(dir, "s"), Policy: pol, ResolvConf: filepath.Join(dir, "none")})
		if err == nil {
			g.Close()
		}
		return err
	}
	if err := env(); err == nil || !strings.Contains(err.Error(), "DNS upstream") {
		t.Errorf("Start with host rules and no resolver = %v; want an error about the DNS upstream", err)
	}
}

// Ingress through forwards and failed flows are counted apart from the
// egress policy's verdicts, so a user reading the summary is not told a
// refused curl was an allowed flow.
func TestSummaryKeepsIngressAndFailuresApart(t *testing.T) {
	r := newRecorder(nil, nil)
	r.record(Flow{Direction: Ingress, Proto: "tcp", Verdict: Allow, Error: "guest: connection refused"})
	r.record(Flow{Direction: Ingress, Proto: "tcp", Verdict: Allow})
	r.record(Flow{Direction: Egress, Proto: "tcp", Verdict: Allow, Error: "dial: connection refused"})
	r.record(Flow{Direction: Egress, Proto: "tcp", Verdict: Allow})
	r.record(Flow{Direction: Egress, Proto: "tcp", Verdict: Deny, Remote: netip.MustParseAddrPort("169.254.169.254:80")})
	s := r.summary()
	if s.Allowed != 2 || s.Failed != 1 || s.Denied != 1 || s.Ingress != 2 || s.IngressFailed != 1 || !s.Any() {
		t.Fatalf("summary = %+v", s)
	}
	want := "egress: 2 allowed (1 failed), 1 denied: tcp 169.254.169.254:80; ingress: 2 connections (1 not accepted by the guest)"
	if got := s.String(); got != want {
		t.Errorf("String() = %q\nwant       %q", got, want)
	}
	if (Summary{}).Any() {
		t.Error("an empty summary says there were flows")
	}
}
