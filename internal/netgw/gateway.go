package netgw

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/hullvm/hull/internal/policy"
	"github.com/hullvm/hull/internal/spec"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
)

// The guest network hull configures (see internal/manifest); zero Config
// fields take these values.
var (
	DefaultGuestIP   = netip.MustParseAddr("10.0.2.15")
	DefaultGatewayIP = netip.MustParseAddr("10.0.2.2")
	DefaultDNSIP     = netip.MustParseAddr("10.0.2.3")
	DefaultGuestMAC  = net.HardwareAddr{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}
	// GatewayMAC is the gateway's own address on the guest link (the one
	// QEMU's user network uses for its gateway).
	GatewayMAC = net.HardwareAddr{0x52, 0x55, 0x0a, 0x00, 0x02, 0x02}
)

// HostAlias is the name the gateway answers with GatewayIP, the guest's
// way to the host's loopback.
const HostAlias = "host.hull.internal"

// Defaults for Config's tuning fields.
const (
	DefaultMTU         = 1500
	DefaultDialTimeout = 10 * time.Second
	DefaultUDPIdle     = 60 * time.Second
	DefaultMaxFlows    = 4096
)

// Forward is one ingress forward: connections (or datagrams) reaching Host
// on the host are carried to GuestIP:GuestPort in the guest.
type Forward struct {
	Proto     string         // "tcp" or "udp"
	Host      netip.AddrPort // host address to listen on; port 0 picks one (see ForwardAddrs)
	GuestPort uint16
}

// ForwardFromSpec converts a spec's -p entry.
func ForwardFromSpec(p spec.Port) (Forward, error) {
	if err := p.Check(); err != nil {
		return Forward{}, fmt.Errorf("-p %s: %w", p, err)
	}
	host, err := netip.ParseAddr(p.HostIP)
	if err != nil {
		return Forward{}, fmt.Errorf("-p %s: %w", p, err)
	}
	return Forward{Proto: p.Proto, Host: netip.AddrPortFrom(host, uint16(p.HostPort)), GuestPort: uint16(p.GuestPort)}, nil
}

// String renders the -p form, 127.0.0.1:8080:80/tcp.
func (f Forward) String() string {
	return fmt.Sprintf("%s:%d/%s", f.Host, f.GuestPort, f.Proto)
}

// Config describes one gateway. Zero values take the defaults named.
type Config struct {
	// Listen is the unix socket path QEMU connects to. Its directory must
	// exist and be accessible to its owner only (mode 0700); the socket is
	// created with mode 0600.
	Listen string

	GuestIP, GatewayIP, DNSIP netip.Addr       // 10.0.2.15, 10.0.2.2, 10.0.2.3
	GuestMAC                  net.HardwareAddr // 52:54:00:12:34:56
	PrefixLen                 int              // of the guest subnet; 24

	// Policy decides egress. Nil denies everything.
	Policy *policy.Policy
	// Forwards are the ingress forwards; their listeners are bound before
	// Start returns.
	Forwards []Forward

	// DNSUpstream is where allowed names are resolved. Zero: the first
	// nameserver of ResolvConf (default /etc/resolv.conf).
	DNSUpstream netip.AddrPort
	ResolvConf  string
	// Hostname is the instance's own name, answered locally with GuestIP,
	// as are "localhost" (loopback) and HostAlias (GatewayIP).
	Hostname string

	// FlowLog receives one JSON line per flow; nil discards them.
	FlowLog io.Writer
	// OnDeny, if set, is called for every denied flow, synchronously from
	// the gateway's packet path: it must return quickly.
	OnDeny func(Flow)
	// Logf, if set, receives diagnostics that are not flows (a broken
	// link, an upstream resolver failing).
	Logf func(format string, args ...any)

	// Dial opens host-side connections for allowed egress flows and is the
	// gateway's only way out for guest traffic; nil uses net.Dialer. Tests
	// use it to stand in for remote hosts.
	Dial func(ctx context.Context, network, address string) (net.Conn, error)

	MTU         int           // guest link IP MTU; 1500
	DialTimeout time.Duration // host dial of an allowed egress flow; 10 s
	UDPIdle     time.Duration // a UDP association with no traffic this long ends; 60 s
	MaxFlows    int           // concurrent flows; beyond it new ones are denied; 4096
}

// Gateway is a running gateway. Its methods are safe for concurrent use.
type Gateway struct {
	cfg      Config
	pol      *policy.Policy
	subnet   netip.Prefix
	upstream netip.AddrPort
	dial     func(ctx context.Context, network, address string) (net.Conn, error)
	rec      *recorder
	logf     func(string, ...any)

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	stop   func() bool // detaches Close from the Start context

	link     *frameLink
	stack    *stack.Stack
	unixLn   *net.UnixListener
	attached chan struct{}

	mu      sync.Mutex
	closed  bool
	wg      sync.WaitGroup         // every goroutine the gateway owns
	closers map[io.Closer]struct{} // live connections and listeners
	flows   int

	forwardAddrs []netip.AddrPort

	deniedMu   sync.Mutex
	deniedSeen map[string]time.Time // denial de-duplication (denyOnce)

	closeOnce sync.Once
}

// Start validates cfg, creates the socket QEMU will connect to, binds the
// ingress listeners and starts serving. It returns once everything is
// bound; QEMU may connect any time after. One QEMU connection is served;
// the socket is removed once it is accepted. Cancelling ctx stops the
// gateway as Close does.
func Start(ctx context.Context, cfg Config) (*Gateway, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := cfg.fill(); err != nil {
		return nil, err
	}
	g := &Gateway{
		cfg:        cfg,
		pol:        cfg.Policy,
		subnet:     netip.PrefixFrom(cfg.GuestIP, cfg.PrefixLen).Masked(),
		upstream:   cfg.DNSUpstream,
		dial:       cfg.Dial,
		rec:        newRecorder(cfg.FlowLog, cfg.OnDeny),
		logf:       cfg.Logf,
		attached:   make(chan struct{}),
		closers:    map[io.Closer]struct{}{},
		deniedSeen: map[string]time.Time{},
	}
	if g.pol == nil {
		p, err := policy.New(nil, policy.Options{})
		if err != nil {
			return nil, err
		}
		g.pol = p
	}
	if g.logf == nil {
		g.logf = func(string, ...any) {}
	}
	if g.dial == nil {
		d := &net.Dialer{}
		g.dial = d.DialContext
	}
	if !g.upstream.IsValid() {
		up, err := upstreamFromResolvConf(cfg.ResolvConf)
		if err != nil && g.pol.HasHostRules() {
			return nil, fmt.Errorf("gateway: host rules need a DNS upstream: %w; set dns.upstream (--dns-upstream)", err)
		}
		g.upstream = up
	}
	g.ctx, g.cancel = context.WithCancel(context.Background())

	ok := false
	defer func() {
		if !ok {
			g.Close()
		}
	}()

	g.link = newFrameLink(uint32(cfg.MTU), GatewayMAC, g.admit)
	g.link.onErr = func(err error) { g.logf("gateway: guest link: %v", err) }
	s, err := newStack(stackConfig{
		link:        g.link,
		addrs:       []netip.Prefix{netip.PrefixFrom(cfg.GatewayIP, cfg.PrefixLen), netip.PrefixFrom(cfg.DNSIP, cfg.PrefixLen)},
		gatewayMode: true,
	})
	if err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	g.stack = s
	if terr := s.AddStaticNeighbor(nicID, header.IPv4ProtocolNumber, fullAddr(netip.AddrPortFrom(cfg.GuestIP, 0)).Addr, tcpipMAC(cfg.GuestMAC)); terr != nil {
		return nil, fmt.Errorf("gateway: pinning the guest's MAC: %w", netErr(terr))
	}
	tcpFwd := tcp.NewForwarder(s, 0, 1024, g.handleTCP)
	s.SetTransportProtocolHandler(tcp.ProtocolNumber, tcpFwd.HandlePacket)
	udpFwd := udp.NewForwarder(s, g.handleUDP)
	s.SetTransportProtocolHandler(udp.ProtocolNumber, udpFwd.HandlePacket)

	if err := g.startDNS(); err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	for _, f := range cfg.Forwards {
		if err := g.startForward(f); err != nil {
			return nil, err
		}
	}
	if err := g.listenUnix(cfg.Listen); err != nil {
		return nil, err
	}
	g.stop = context.AfterFunc(ctx, func() { g.Close() })
	ok = true
	return g, nil
}

func (c *Config) fill() error {
	if c.Listen == "" {
		return errors.New("gateway: no socket path (Config.Listen)")
	}
	if !c.GuestIP.IsValid() {
		c.GuestIP = DefaultGuestIP
	}
	if !c.GatewayIP.IsValid() {
		c.GatewayIP = DefaultGatewayIP
	}
	if !c.DNSIP.IsValid() {
		c.DNSIP = DefaultDNSIP
	}
	if c.GuestMAC == nil {
		c.GuestMAC = DefaultGuestMAC
	}
	if c.PrefixLen == 0 {
		c.PrefixLen = 24
	}
	if c.MTU == 0 {
		c.MTU = DefaultMTU
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	if c.UDPIdle == 0 {
		c.UDPIdle = DefaultUDPIdle
	}
	if c.MaxFlows == 0 {
		c.MaxFlows = DefaultMaxFlows
	}
	if c.ResolvConf == "" {
		c.ResolvConf = "/etc/resolv.conf"
	}
	for _, a := range []netip.Addr{c.GuestIP, c.GatewayIP, c.DNSIP} {
		if !a.Is4() {
			return fmt.Errorf("gateway: guest-side address %s: the guest link is IPv4 only", a)
		}
	}
	if c.GuestIP == c.GatewayIP || c.GuestIP == c.DNSIP || c.GatewayIP == c.DNSIP {
		return errors.New("gateway: guest, gateway and DNS addresses must differ")
	}
	subnet := netip.PrefixFrom(c.GuestIP, c.PrefixLen).Masked()
	if c.PrefixLen < 8 || c.PrefixLen > 30 || !subnet.Contains(c.GatewayIP) || !subnet.Contains(c.DNSIP) {
		return fmt.Errorf("gateway: gateway %s and DNS %s must be in the guest subnet %s", c.GatewayIP, c.DNSIP, subnet)
	}
	if len(c.GuestMAC) != 6 {
		return fmt.Errorf("gateway: guest MAC %s is not an Ethernet address", c.GuestMAC)
	}
	if c.MTU < 576 || c.MTU > 65535-header.EthernetMinimumSize {
		return fmt.Errorf("gateway: MTU %d out of range 576-65521", c.MTU)
	}
	for _, f := range c.Forwards {
		if f.Proto != "tcp" && f.Proto != "udp" {
			return fmt.Errorf("gateway: forward %s: protocol must be tcp or udp", f)
		}
		if !f.Host.Addr().IsValid() || f.GuestPort == 0 {
			return fmt.Errorf("gateway: forward %s: want a host address and a guest port", f)
		}
	}
	return nil
}

// listenUnix creates the socket inside an owner-only directory.
func (g *Gateway) listenUnix(path string) error {
	dir := filepath.Dir(path)
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("gateway: socket directory: %w", err)
	}
	if !fi.IsDir() || fi.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("gateway: socket directory %s has mode %v; want a directory only its owner can enter (0700)", dir, fi.Mode().Perm())
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != os.ModeSocket {
			return fmt.Errorf("gateway: %s exists and is not a socket", path)
		}
		os.Remove(path) // a stale socket from an earlier run
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return fmt.Errorf("gateway: %w", err)
	}
	g.unixLn = ln
	if !g.track(ln) {
		return net.ErrClosed
	}
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		defer g.untrack(ln)
		c, err := ln.AcceptUnix()
		ln.Close() // one guest per gateway
		if err != nil {
			return
		}
		g.mu.Lock()
		closed := g.closed
		g.mu.Unlock()
		if closed {
			c.Close()
			return
		}
		c.SetReadBuffer(1 << 20)
		c.SetWriteBuffer(1 << 20)
		g.link.start(c)
		close(g.attached)
	}()
	return nil
}

// Attached is closed once QEMU has connected.
func (g *Gateway) Attached() <-chan struct{} { return g.attached }

// ForwardAddrs returns the bound host address of each forward, in
// Config.Forwards order (useful when a forward asked for port 0).
func (g *Gateway) ForwardAddrs() []netip.AddrPort {
	return append([]netip.AddrPort(nil), g.forwardAddrs...)
}

// Summary counts the flows so far.
func (g *Gateway) Summary() Summary { return g.rec.summary() }

// Close stops the gateway: listeners, the QEMU link, every flow and the
// netstack. Flows still open are ended and logged. It waits for every
// goroutine the gateway started and is safe to call more than once; it
// always returns nil.
//
// One window remains that Close cannot wait for: tcp.Forwarder starts its
// hook in a goroutine of its own, so a SYN that arrived just before the
// link closed may run the hook after Close returns. The hook then finds
// the gateway closed, answers nothing (the stack is gone) and returns at
// once.
func (g *Gateway) Close() error {
	g.closeOnce.Do(func() {
		g.mu.Lock()
		g.closed = true
		closers := make([]io.Closer, 0, len(g.closers))
		for c := range g.closers {
			closers = append(closers, c)
		}
		g.mu.Unlock()
		if g.stop != nil {
			g.stop()
		}
		if g.cancel != nil {
			g.cancel()
		}
		if g.link != nil {
			g.link.close() // no more frames in, so no new flows
		}
		for _, c := range closers {
			c.Close()
		}
		g.wg.Wait()
		if g.stack != nil {
			g.stack.Close()
			g.stack.Wait()
		}
		if g.unixLn != nil {
			os.Remove(g.cfg.Listen)
		}
	})
	return nil
}

// track registers a live connection or listener so Close can close it.
// It reports false (and closes c) when the gateway is already closed.
func (g *Gateway) track(c io.Closer) bool {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		c.Close()
		return false
	}
	g.closers[c] = struct{}{}
	g.mu.Unlock()
	return true
}

func (g *Gateway) untrack(c io.Closer) {
	g.mu.Lock()
	delete(g.closers, c)
	g.mu.Unlock()
}

// enter registers a goroutine about to run flow work; false once closed.
func (g *Gateway) enter() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.wg.Add(1)
	return true
}

// beginFlow reserves a slot under MaxFlows.
func (g *Gateway) beginFlow() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.flows >= g.cfg.MaxFlows {
		return false
	}
	g.flows++
	return true
}

func (g *Gateway) endFlow() {
	g.mu.Lock()
	g.flows--
	g.mu.Unlock()
}

// firstDenial reports whether a denial of key should be recorded now:
// repeated UDP datagrams and pings to the same denied destination are
// recorded once a window, not once a packet.
func (g *Gateway) firstDenial(key string) bool {
	const window = 30 * time.Second
	now := time.Now()
	g.deniedMu.Lock()
	defer g.deniedMu.Unlock()
	if t, ok := g.deniedSeen[key]; ok && now.Sub(t) < window {
		return false
	}
	if len(g.deniedSeen) > 4096 {
		for k, t := range g.deniedSeen {
			if now.Sub(t) >= window {
				delete(g.deniedSeen, k)
			}
		}
	}
	g.deniedSeen[key] = now
	return true
}
