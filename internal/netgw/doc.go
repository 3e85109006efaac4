// Package netgw is hull's zero-trust network gateway: the only network a
// guest VM has.
//
// QEMU attaches the guest's virtio-net NIC to the gateway with
// "-netdev stream" over a unix socket; each Ethernet frame travels with a
// 4-byte big-endian length in front. On the gateway side the frames feed a
// gVisor netstack (pkg/tcpip) running inside the hull process. The stack
// plays the guest's whole world: it answers ARP for the gateway and DNS
// addresses, terminates every TCP connection and UDP flow the guest
// starts, and — only when the policy allows it — opens the matching
// connection from the host.
//
// # Threat model
//
// All guest egress is untrusted. The guest may run a compromised app that
// tries to fetch tools, phone home, exfiltrate over DNS, reach the cloud
// metadata service, scan the host's loopback services, spoof its source
// address or flood the gateway. The host, the spec's rules and the
// upstream DNS resolver are trusted.
//
// # Invariants
//
//   - No host-side dial happens before the policy has allowed the flow.
//     TCP is decided in tcp.Forwarder's hook, before the handshake with the
//     guest completes: a denied connection gets an immediate RST (the app
//     sees ECONNREFUSED, not a timeout); an allowed one is dialled on the
//     host first, and a failed host dial also becomes an RST. UDP is
//     decided in udp.Forwarder's hook: denied datagrams are dropped
//     silently. ICMP echo beyond the gateway's own addresses is dropped.
//   - Rules name real destinations. The guest reaches the host's loopback
//     only through the alias GatewayIP (10.0.2.2, "host.hull.internal"),
//     which is translated to 127.0.0.1 before the policy is asked. Other
//     addresses in the guest subnet are never forwarded; the DNS address
//     serves port 53 only.
//   - DNS: the gateway's resolver at DNSIP:53 (UDP and TCP) answers
//     "localhost", the instance's hostname and host.hull.internal itself,
//     forwards names a host rule allows to the upstream, and answers
//     REFUSED for every other name. The addresses of an allowed answer are
//     learned by the policy for the answer's TTL (clamped; see package
//     policy), and the TTLs handed to the guest are capped at the policy's
//     ceiling. Host loopback addresses in answers are rewritten to the
//     alias (the guest's own 127.0.0.1 is not the host's). DNS to any
//     other server is a flow like any other.
//   - Frames are accepted only from the guest's MAC, IPv4 packets only
//     from the guest's address; ARP is answered only for GatewayIP and
//     DNSIP. Other EtherTypes (IPv6 included) are dropped: the gateway is
//     IPv4-only on the guest side.
//   - Every flow, allowed or denied, is written to the flow log as one JSON
//     line and counted in Summary; denied flows also go to OnDeny. Allowed
//     flows are written when they end (with bytes and duration), denied
//     ones at once — once per guest, destination and 30 s window, so a
//     guest retrying or flooding a denied destination cannot fill the
//     host's disk.
//   - The Gateway owns every goroutine it starts; Close stops them all and
//     releases every socket. Each flow runs in goroutines tracked by the
//     gateway; splicing never outlives the flow's two connections.
//
// # What it does not do
//
// No IPv6 on the guest link, no DHCP (the guest is configured statically),
// no ICMP forwarding of any kind, no inspection of what flows carry (a
// rule allowing api.example.com:443 allows whatever that address serves
// on 443), and no cutting of open flows when a DNS answer expires — the
// policy gates new flows only. Resource limits: MaxFlows concurrent flows
// (new ones are refused beyond it), 64 DNS queries in flight, and a single
// guest link per gateway.
//
// # Why REFUSED
//
// A name no rule allows is answered REFUSED, not NXDOMAIN. REFUSED is the
// truth — the resolver declines by policy, the name may well exist — so a
// developer reading "server misbehaving"/"refused" in the app's error goes
// to the policy, where "no such host" would send them hunting for a typo.
// NXDOMAIN would also let negative caches remember a lie. The guest has one
// nameserver, so there is no fallback server to delay the failure.
//
// tcpip.Error values are converted to Go errors in one place (netErr).
package netgw
