package netgw

import (
	"context"
	"net"
	"net/netip"
	"time"

	"github.com/hullvm/hull/internal/policy"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"
)

var hostLoopback = netip.MustParseAddr("127.0.0.1")

func tcpipMAC(m net.HardwareAddr) tcpip.LinkAddress { return tcpip.LinkAddress(m) }

// admit filters frames from the guest before the netstack sees them. It
// runs on the link's reader goroutine.
func (g *Gateway) admit(frame []byte) bool {
	eth := header.Ethernet(frame)
	if eth.SourceAddress() != tcpipMAC(g.cfg.GuestMAC) {
		return false
	}
	if dst := eth.DestinationAddress(); dst != tcpipMAC(GatewayMAC) && dst != header.EthernetBroadcastAddress {
		return false
	}
	payload := frame[header.EthernetMinimumSize:]
	switch eth.Type() {
	case header.ARPProtocolNumber:
		a := header.ARP(payload)
		if !a.IsValid() {
			return false
		}
		if a.Op() != header.ARPRequest {
			return true // a reply: only ever an answer to the gateway's own question
		}
		target, _ := netip.AddrFromSlice(a.ProtocolAddressTarget())
		return target == g.cfg.GatewayIP || target == g.cfg.DNSIP
	case header.IPv4ProtocolNumber:
		ip := header.IPv4(payload)
		if !ip.IsValid(len(payload)) {
			return false
		}
		src, _ := netip.AddrFromSlice(ip.SourceAddressSlice())
		if src != g.cfg.GuestIP {
			return false // spoofed source
		}
		if ip.TransportProtocol() == header.ICMPv4ProtocolNumber && ip.FragmentOffset() == 0 {
			dst, _ := netip.AddrFromSlice(ip.DestinationAddressSlice())
			if dst == g.cfg.GatewayIP || dst == g.cfg.DNSIP {
				return true // the gateway answers pings itself
			}
			icmp := header.ICMPv4(ip.Payload())
			if len(icmp) >= header.ICMPv4MinimumSize && icmp.Type() == header.ICMPv4Echo {
				g.denyOnce(Flow{
					Time: time.Now(), Direction: Egress, Proto: "icmp",
					Guest: netip.AddrPortFrom(src, 0), Remote: netip.AddrPortFrom(dst, 0),
					Verdict: Deny, Reason: "icmp echo is never forwarded",
				})
			}
			return false
		}
		return true
	default:
		return false // IPv6 and everything else: the guest link is IPv4 only
	}
}

// decision is the outcome of checking one new egress flow.
type decision struct {
	real    netip.AddrPort // what the host side dials
	name    string
	verdict policy.Verdict
}

// decide maps the guest-visible destination to the real one and asks the
// policy. It does no I/O.
func (g *Gateway) decide(proto string, guest, dst netip.AddrPort) decision {
	d := decision{real: dst}
	a := dst.Addr()
	switch {
	case guest.Addr() != g.cfg.GuestIP:
		d.verdict.Reason = "source " + guest.Addr().String() + " is not the guest's address"
		return d
	case a == g.cfg.GatewayIP:
		d.real = netip.AddrPortFrom(hostLoopback, dst.Port())
		d.name = HostAlias
	case a == g.cfg.DNSIP:
		d.verdict.Reason = "the gateway's DNS address serves port 53 only"
		return d
	case g.subnet.Contains(a):
		d.verdict.Reason = "guest subnet address " + a.String() + " is not routed"
		return d
	}
	d.verdict = g.pol.Evaluate(proto, d.real)
	if d.verdict.Name != "" {
		d.name = d.verdict.Name
	}
	return d
}

// handleTCP is tcp.Forwarder's hook: it runs, in a goroutine of its own,
// for each new SYN from the guest, before the handshake completes.
func (g *Gateway) handleTCP(r *tcp.ForwarderRequest) {
	if !g.enter() {
		r.Complete(true)
		return
	}
	defer g.wg.Done()
	id := r.ID()
	guest := addrPort(id.RemoteAddress, id.RemotePort)
	d := g.decide(policy.TCP, guest, addrPort(id.LocalAddress, id.LocalPort))
	f := Flow{
		Time: time.Now(), Direction: Egress, Proto: policy.TCP, Guest: guest, Remote: d.real,
		Name: d.name, Rule: d.verdict.Rule, Verdict: Allow,
	}
	if d.verdict.Allow && !g.beginFlow() {
		d.verdict = policy.Verdict{Reason: "gateway flow limit reached"}
		f.Rule = ""
	} else if d.verdict.Allow {
		defer g.endFlow()
	}
	if !d.verdict.Allow {
		r.Complete(true) // RST: the guest sees ECONNREFUSED at once
		f.Verdict, f.Reason = Deny, d.verdict.Reason
		g.denyOnce(f)
		return
	}

	ctx, cancel := context.WithTimeout(g.ctx, g.cfg.DialTimeout)
	hc, err := g.dial(ctx, "tcp", d.real.String())
	cancel()
	if err != nil {
		r.Complete(true)
		f.Error = "dial: " + err.Error()
		f.Duration = time.Since(f.Time)
		g.rec.record(f)
		return
	}
	var wq waiter.Queue
	ep, terr := r.CreateEndpoint(&wq)
	r.Complete(false)
	if terr != nil {
		hc.Close()
		f.Error = "guest handshake: " + netErr(terr).Error()
		f.Duration = time.Since(f.Time)
		g.rec.record(f)
		return
	}
	gc := gonet.NewTCPConn(&wq, ep)
	if !g.track(gc) {
		hc.Close()
		return
	}
	defer g.untrack(gc)
	if !g.track(hc) {
		gc.Close()
		return
	}
	defer g.untrack(hc)
	f.BytesOut, f.BytesIn = splice(gc, asHalfCloser(hc))
	f.Duration = time.Since(f.Time)
	g.rec.record(f)
}

// handleUDP is udp.Forwarder's hook. It runs synchronously on the packet
// path for a datagram no endpoint claimed (the first of a new flow), so it
// decides at once and leaves the host dial to the flow's goroutine.
func (g *Gateway) handleUDP(r *udp.ForwarderRequest) {
	id := r.ID()
	guest := addrPort(id.RemoteAddress, id.RemotePort)
	d := g.decide(policy.UDP, guest, addrPort(id.LocalAddress, id.LocalPort))
	f := Flow{
		Time: time.Now(), Direction: Egress, Proto: policy.UDP, Guest: guest, Remote: d.real,
		Name: d.name, Rule: d.verdict.Rule, Verdict: Allow,
	}
	if d.verdict.Allow && !g.beginFlow() {
		d.verdict = policy.Verdict{Reason: "gateway flow limit reached"}
	}
	if !d.verdict.Allow {
		f.Verdict, f.Reason, f.Rule = Deny, d.verdict.Reason, ""
		g.denyOnce(f) // dropped silently, as on a firewall
		return
	}
	if !g.enter() {
		g.endFlow()
		return
	}
	var wq waiter.Queue
	ep, terr := r.CreateEndpoint(&wq)
	if terr != nil {
		g.endFlow()
		g.wg.Done()
		f.Error = "guest endpoint: " + netErr(terr).Error()
		g.rec.record(f)
		return
	}
	gc := gonet.NewUDPConn(&wq, ep)
	go func() {
		defer g.wg.Done()
		defer g.endFlow()
		if !g.track(gc) {
			return
		}
		defer g.untrack(gc)
		ctx, cancel := context.WithTimeout(g.ctx, g.cfg.DialTimeout)
		hc, err := g.dial(ctx, "udp", d.real.String())
		cancel()
		if err != nil {
			gc.Close()
			f.Error = "dial: " + err.Error()
			f.Duration = time.Since(f.Time)
			g.rec.record(f)
			return
		}
		if !g.track(hc) {
			gc.Close()
			return
		}
		defer g.untrack(hc)
		f.BytesOut, f.BytesIn = relayDatagrams(gc, hc, g.cfg.UDPIdle)
		f.Duration = time.Since(f.Time)
		g.rec.record(f)
	}()
}

// denyOnce records a denied flow once per guest, destination and window
// (30 s), however often the guest retries: a guest hammering a denied
// address must not be able to fill the host's disk with the flow log.
func (g *Gateway) denyOnce(f Flow) {
	if g.firstDenial(f.Proto + " " + f.Guest.Addr().String() + " " + f.Remote.String()) {
		g.rec.record(f)
	}
}
