package netgw

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hullvm/hull/internal/policy"
	"github.com/hullvm/hull/internal/spec"
	"github.com/miekg/dns"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// fakeGuest is what QEMU and the guest kernel are to the gateway: a
// second netstack at 10.0.2.15 with the guest's MAC, whose NIC speaks the
// 4-byte-length framing over a unix socket connected to Config.Listen.
type fakeGuest struct {
	s         *stack.Stack
	link      *frameLink
	closeOnce sync.Once
}

var guestAddr = netip.MustParsePrefix("10.0.2.15/24")

func newFakeGuest(t testing.TB, sock string, mtu int) *fakeGuest {
	t.Helper()
	conn, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatalf("connecting the fake guest to %s: %v", sock, err)
	}
	// Big socket buffers: unlike QEMU, whose reading never waits on its
	// writing, both ends here write from their reader goroutines.
	conn.(*net.UnixConn).SetReadBuffer(4 << 20)
	conn.(*net.UnixConn).SetWriteBuffer(4 << 20)
	link := newFrameLink(uint32(mtu), DefaultGuestMAC, nil)
	s, err := newStack(stackConfig{link: link, addrs: []netip.Prefix{guestAddr}, gateway: DefaultGatewayIP})
	if err != nil {
		conn.Close()
		t.Fatalf("fake guest stack: %v", err)
	}
	link.start(conn)
	fg := &fakeGuest{s: s, link: link}
	t.Cleanup(fg.close)
	return fg
}

func (fg *fakeGuest) close() {
	fg.closeOnce.Do(func() {
		fg.link.close()
		fg.s.Close()
		fg.s.Wait()
	})
}

func (fg *fakeGuest) dial(ctx context.Context, addr string) (net.Conn, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return nil, err
	}
	return dialStackTCP(ctx, fg.s, ap)
}

func (fg *fakeGuest) httpClient() *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			DialContext:       func(ctx context.Context, _, addr string) (net.Conn, error) { return fg.dial(ctx, addr) },
			DisableKeepAlives: true,
		},
		Timeout: 10 * time.Second,
	}
}

// listenTCP listens in the guest on 10.0.2.15:port.
func (fg *fakeGuest) listenTCP(t testing.TB, port uint16) net.Listener {
	t.Helper()
	ln, err := listenStackTCP(fg.s, netip.AddrPortFrom(guestAddr.Addr(), port))
	if err != nil {
		t.Fatalf("guest listen: %v", err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// udpEcho runs a UDP echo server in the guest on port.
func (fg *fakeGuest) udpEcho(t testing.TB, port uint16) {
	t.Helper()
	pc, err := listenStackUDP(fg.s, netip.AddrPortFrom(guestAddr.Addr(), port))
	if err != nil {
		t.Fatalf("guest udp listen: %v", err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 65535)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(buf[:n], from)
		}
	}()
	t.Cleanup(func() { pc.Close(); wg.Wait() })
}

// query sends one DNS query from the guest to the gateway's resolver.
func (fg *fakeGuest) query(t testing.TB, proto, name string, qtype uint16) (*dns.Msg, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	server := netip.AddrPortFrom(DefaultDNSIP, 53)
	var c net.Conn
	var err error
	if proto == "udp" {
		c, err = dialStackUDP(fg.s, server)
	} else {
		c, err = dialStackTCP(ctx, fg.s, server)
	}
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	co := &dns.Conn{Conn: c}
	if err := co.WriteMsg(m); err != nil {
		return nil, err
	}
	return co.ReadMsg()
}

// sendUDP sends one datagram from the guest to dst and returns the reply
// seen within wait, if any.
func (fg *fakeGuest) sendUDP(t testing.TB, dst netip.AddrPort, payload []byte, wait time.Duration) ([]byte, error) {
	t.Helper()
	c, err := dialStackUDP(fg.s, dst)
	if err != nil {
		t.Fatalf("guest udp dial: %v", err)
	}
	defer c.Close()
	if _, err := c.Write(payload); err != nil {
		return nil, err
	}
	c.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 65535)
	n, err := c.Read(buf)
	if err != nil {
		return nil, err
	}
	return buf[:n], nil
}

// testEnv is a started gateway with a fake guest attached.
type testEnv struct {
	gw    *Gateway
	guest *fakeGuest
	log   *syncBuffer

	mu     sync.Mutex
	denied []Flow
	dialed []string // every host-side dial the gateway attempted
}

type envOpts struct {
	allow    []string
	forwards []Forward
	upstream netip.AddrPort
	// remap sends host dials for a fake remote address to a real local
	// one; every other non-loopback dial fails. No test traffic leaves
	// this machine's loopback.
	remap  map[string]string
	now    func() time.Time // the policy's clock
	mtu    int              // of the guest link; DefaultMTU
	mutate func(*Config)
}

func startEnv(t testing.TB, o envOpts) *testEnv {
	t.Helper()
	var rules []spec.EgressRule
	for _, a := range o.allow {
		r, err := spec.ParseAllow(a)
		if err != nil {
			t.Fatalf("ParseAllow(%q): %v", a, err)
		}
		rules = append(rules, r)
	}
	pol, err := policy.New(rules, policy.Options{Now: o.now})
	if err != nil {
		t.Fatalf("policy.New: %v", err)
	}
	dir := privateDir(t)
	env := &testEnv{log: &syncBuffer{}}
	d := &net.Dialer{}
	cfg := Config{
		Listen:      filepath.Join(dir, "net.sock"),
		Policy:      pol,
		Forwards:    o.forwards,
		DNSUpstream: o.upstream,
		ResolvConf:  filepath.Join(dir, "no-resolv.conf"),
		Hostname:    "app",
		FlowLog:     env.log,
		MTU:         o.mtu,
		OnDeny: func(f Flow) {
			env.mu.Lock()
			env.denied = append(env.denied, f)
			env.mu.Unlock()
		},
		Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			env.mu.Lock()
			env.dialed = append(env.dialed, network+" "+addr)
			env.mu.Unlock()
			if to, ok := o.remap[addr]; ok {
				return d.DialContext(ctx, network, to)
			}
			if ap, err := netip.ParseAddrPort(addr); err != nil || !ap.Addr().IsLoopback() {
				return nil, &net.OpError{Op: "dial", Net: network, Err: syscall.ENETUNREACH}
			}
			return d.DialContext(ctx, network, addr)
		},
	}
	if o.mutate != nil {
		o.mutate(&cfg)
	}
	gw, err := Start(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	env.gw = gw
	t.Cleanup(func() { gw.Close() })
	mtu := cfg.MTU
	if mtu == 0 {
		mtu = DefaultMTU
	}
	env.guest = newFakeGuest(t, cfg.Listen, mtu)
	select {
	case <-gw.Attached():
	case <-time.After(5 * time.Second):
		t.Fatal("gateway did not see the fake guest connect")
	}
	return env
}

func (e *testEnv) dials() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.dialed...)
}

func (e *testEnv) denials() []Flow {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]Flow(nil), e.denied...)
}

// syncBuffer is a goroutine-safe bytes.Buffer for the flow log.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// requireRefused asserts err is a fast refusal (RST), not a timeout.
func requireRefused(t testing.TB, err error, took time.Duration) {
	t.Helper()
	if err == nil {
		t.Fatalf("dial succeeded; want ECONNREFUSED")
	}
	if !errors.Is(err, syscall.ECONNREFUSED) && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("dial error = %v; want ECONNREFUSED or ECONNRESET", err)
	}
	if took > 2*time.Second {
		t.Fatalf("refusal took %v; want it immediate (well under 2s)", took)
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func readAllString(t testing.TB, r io.Reader) string {
	t.Helper()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return strings.TrimSpace(string(b))
}

// privateDir is a fresh 0700 directory, as the runner's instance dir is.
func privateDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "netgw")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}
