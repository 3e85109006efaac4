package netgw

import (
	"fmt"
	"net/netip"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/link/ethernet"
	"gvisor.dev/gvisor/pkg/tcpip/network/arp"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
)

const nicID tcpip.NICID = 1

// stackConfig describes one IPv4 netstack on one Ethernet link.
type stackConfig struct {
	link    *frameLink
	addrs   []netip.Prefix // first is primary (source of locally started connections)
	gateway netip.Addr     // default route via; invalid for none
	// gatewayMode makes the stack everyone's peer: promiscuous (accept
	// packets for any address) and spoofing (reply from any address).
	gatewayMode bool
}

// newStack builds an IPv4 netstack with ARP, TCP, UDP and ICMP, tuned for
// bulk transfer over a local link. Both the gateway and the tests' fake
// guest use it, so benchmarks measure like against like.
func newStack(c stackConfig) (*stack.Stack, error) {
	s := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, arp.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol, udp.NewProtocol, icmp.NewProtocol4},
	})
	ok := false
	defer func() {
		if !ok {
			s.Close()
			s.Wait()
		}
	}()
	opts := []tcpip.SettableTransportProtocolOption{
		ptr(tcpip.TCPSACKEnabled(true)),
		ptr(tcpip.TCPModerateReceiveBufferOption(true)),
		&tcpip.TCPReceiveBufferSizeRangeOption{Min: 4 << 10, Default: 1 << 20, Max: 8 << 20},
		&tcpip.TCPSendBufferSizeRangeOption{Min: 4 << 10, Default: 1 << 20, Max: 8 << 20},
	}
	if c.gatewayMode {
		// The guest link is a local socket: no stray segment of an old
		// connection can arrive late, so TIME_WAIT protects nothing. Kept
		// at the usual 60 s it would hurt: a guest that reuses a source
		// port for the same destination (likely under connection churn)
		// would have its SYN swallowed by the gateway's TIME_WAIT
		// endpoint, since netstack hands a SYN in TIME_WAIT only to a
		// listener, never to a forwarder. A retransmitted FIN after the
		// endpoint is gone just gets an RST, which ends the peer's
		// LAST_ACK as the ACK would have.
		opts = append(opts, ptr(tcpip.TCPTimeWaitTimeoutOption(0)))
	}
	for _, o := range opts {
		if err := s.SetTransportProtocolOption(tcp.ProtocolNumber, o); err != nil {
			return nil, fmt.Errorf("setting tcp option %T: %w", o, netErr(err))
		}
	}
	if err := s.CreateNICWithOptions(nicID, ethernet.New(c.link), stack.NICOptions{Name: "eth0"}); err != nil {
		return nil, fmt.Errorf("creating NIC: %w", netErr(err))
	}
	if c.gatewayMode {
		if err := s.SetPromiscuousMode(nicID, true); err != nil {
			return nil, fmt.Errorf("promiscuous mode: %w", netErr(err))
		}
		if err := s.SetSpoofing(nicID, true); err != nil {
			return nil, fmt.Errorf("spoofing: %w", netErr(err))
		}
	}
	var routes []tcpip.Route
	for _, p := range c.addrs {
		awp := tcpip.AddressWithPrefix{Address: tcpip.AddrFrom4(p.Addr().As4()), PrefixLen: p.Bits()}
		pa := tcpip.ProtocolAddress{Protocol: ipv4.ProtocolNumber, AddressWithPrefix: awp}
		if err := s.AddProtocolAddress(nicID, pa, stack.AddressProperties{}); err != nil {
			return nil, fmt.Errorf("adding address %s: %w", p, netErr(err))
		}
		routes = append(routes, tcpip.Route{Destination: awp.Subnet(), NIC: nicID})
	}
	if c.gateway.IsValid() {
		routes = append(routes, tcpip.Route{
			Destination: mustSubnet(netip.PrefixFrom(netip.IPv4Unspecified(), 0)),
			Gateway:     tcpip.AddrFrom4(c.gateway.As4()),
			NIC:         nicID,
		})
	}
	s.SetRouteTable(routes)
	ok = true
	return s, nil
}

func ptr[T any](v T) *T { return &v }

func mustSubnet(p netip.Prefix) tcpip.Subnet {
	awp := tcpip.AddressWithPrefix{Address: tcpip.AddrFrom4(p.Addr().As4()), PrefixLen: p.Bits()}
	return awp.Subnet()
}

// fullAddr converts an IPv4 AddrPort to netstack's form.
func fullAddr(ap netip.AddrPort) tcpip.FullAddress {
	return tcpip.FullAddress{NIC: nicID, Addr: tcpip.AddrFrom4(ap.Addr().Unmap().As4()), Port: ap.Port()}
}

// addrPort converts a netstack address and port back.
func addrPort(a tcpip.Address, port uint16) netip.AddrPort {
	ip, _ := netip.AddrFromSlice(a.AsSlice())
	return netip.AddrPortFrom(ip.Unmap(), port)
}
