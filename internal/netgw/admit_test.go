package netgw

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

func ethFrame(src, dst net.HardwareAddr, typ tcpip.NetworkProtocolNumber, payload []byte) []byte {
	f := make([]byte, header.EthernetMinimumSize+len(payload))
	header.Ethernet(f).Encode(&header.EthernetFields{SrcAddr: tcpipMAC(src), DstAddr: tcpipMAC(dst), Type: typ})
	copy(f[header.EthernetMinimumSize:], payload)
	return f
}

func arpRequest(sender, target string) []byte {
	a := header.ARP(make([]byte, header.ARPSize))
	a.SetIPv4OverEthernet()
	a.SetOp(header.ARPRequest)
	copy(a.HardwareAddressSender(), DefaultGuestMAC)
	s, t := netip.MustParseAddr(sender).As4(), netip.MustParseAddr(target).As4()
	copy(a.ProtocolAddressSender(), s[:])
	copy(a.ProtocolAddressTarget(), t[:])
	return a
}

func ipPacket(src, dst string, proto tcpip.TransportProtocolNumber, payload []byte) []byte {
	b := make([]byte, header.IPv4MinimumSize+len(payload))
	ip := header.IPv4(b)
	ip.Encode(&header.IPv4Fields{
		TotalLength: uint16(len(b)), TTL: 64, Protocol: uint8(proto),
		SrcAddr: tcpip.AddrFrom4(netip.MustParseAddr(src).As4()),
		DstAddr: tcpip.AddrFrom4(netip.MustParseAddr(dst).As4()),
	})
	ip.SetChecksum(^ip.CalculateChecksum())
	copy(b[header.IPv4MinimumSize:], payload)
	return b
}

func echoRequest() []byte {
	e := header.ICMPv4(make([]byte, header.ICMPv4MinimumSize))
	e.SetType(header.ICMPv4Echo)
	return e
}

func TestAdmit(t *testing.T) {
	cfg := Config{Listen: "x"}
	if err := cfg.fill(); err != nil {
		t.Fatal(err)
	}
	var denied []Flow
	g := &Gateway{cfg: cfg, rec: newRecorder(nil, func(f Flow) { denied = append(denied, f) }), deniedSeen: map[string]time.Time{}}
	guest, gw := DefaultGuestMAC, GatewayMAC
	bcast := net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	other := net.HardwareAddr{0x52, 0x54, 0x00, 0xde, 0xad, 0x01}
	tcpSeg := make([]byte, header.TCPMinimumSize)

	tests := []struct {
		name  string
		frame []byte
		want  bool
	}{
		{"arp for gateway", ethFrame(guest, bcast, header.ARPProtocolNumber, arpRequest("10.0.2.15", "10.0.2.2")), true},
		{"arp for dns", ethFrame(guest, bcast, header.ARPProtocolNumber, arpRequest("10.0.2.15", "10.0.2.3")), true},
		{"arp for another host", ethFrame(guest, bcast, header.ARPProtocolNumber, arpRequest("10.0.2.15", "10.0.2.99")), false},
		{"arp from another mac", ethFrame(other, bcast, header.ARPProtocolNumber, arpRequest("10.0.2.15", "10.0.2.2")), false},
		{"truncated arp", ethFrame(guest, bcast, header.ARPProtocolNumber, []byte{0, 1}), false},
		{"tcp from guest", ethFrame(guest, gw, header.IPv4ProtocolNumber, ipPacket("10.0.2.15", "93.184.216.34", header.TCPProtocolNumber, tcpSeg)), true},
		{"tcp to another mac", ethFrame(guest, other, header.IPv4ProtocolNumber, ipPacket("10.0.2.15", "93.184.216.34", header.TCPProtocolNumber, tcpSeg)), false},
		{"spoofed source", ethFrame(guest, gw, header.IPv4ProtocolNumber, ipPacket("10.0.2.16", "93.184.216.34", header.TCPProtocolNumber, tcpSeg)), false},
		{"ping gateway", ethFrame(guest, gw, header.IPv4ProtocolNumber, ipPacket("10.0.2.15", "10.0.2.2", header.ICMPv4ProtocolNumber, echoRequest())), true},
		{"ping outside", ethFrame(guest, gw, header.IPv4ProtocolNumber, ipPacket("10.0.2.15", "8.8.8.8", header.ICMPv4ProtocolNumber, echoRequest())), false},
		{"ipv6", ethFrame(guest, gw, header.IPv6ProtocolNumber, make([]byte, header.IPv6MinimumSize)), false},
		{"garbage ipv4", ethFrame(guest, gw, header.IPv4ProtocolNumber, []byte{0x45, 0}), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := g.admit(tt.frame); got != tt.want {
				t.Errorf("admit = %v; want %v", got, tt.want)
			}
		})
	}
	if len(denied) != 1 || denied[0].Target() != "icmp 8.8.8.8" {
		t.Errorf("denials = %v; want the one ping to 8.8.8.8", denied)
	}
}
