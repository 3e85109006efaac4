package netgw

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/hullvm/hull/internal/policy"
	"github.com/miekg/dns"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
)

const (
	dnsUpstreamTimeout = 5 * time.Second
	dnsTCPIdle         = 10 * time.Second
	dnsMaxInFlight     = 64   // concurrent UDP queries; beyond, queries are dropped and the guest retries
	dnsMaxUDPSize      = 1232 // the EDNS size the gateway offers and uses upstream
	localTTL           = 60
)

// startDNS binds the resolver at DNSIP:53, UDP and TCP, in the netstack.
func (g *Gateway) startDNS() error {
	addr := netip.AddrPortFrom(g.cfg.DNSIP, 53)
	pc, err := listenStackUDP(g.stack, addr)
	if err != nil {
		return fmt.Errorf("dns: %w", err)
	}
	if !g.track(pc) {
		return net.ErrClosed
	}
	ln, err := listenStackTCP(g.stack, addr)
	if err != nil {
		return fmt.Errorf("dns: %w", err)
	}
	if !g.track(ln) {
		return net.ErrClosed
	}
	g.wg.Add(2)
	go g.serveDNSUDP(pc)
	go g.serveDNSTCP(ln)
	return nil
}

func (g *Gateway) serveDNSUDP(pc *gonet.UDPConn) {
	defer g.wg.Done()
	defer g.untrack(pc)
	sem := make(chan struct{}, dnsMaxInFlight)
	buf := make([]byte, 65535)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return // closed
		}
		select {
		case sem <- struct{}{}:
		default:
			continue
		}
		if !g.enter() {
			return
		}
		req := append([]byte(nil), buf[:n]...)
		guest := from.(*net.UDPAddr).AddrPort()
		go func() {
			defer g.wg.Done()
			defer func() { <-sem }()
			if resp := g.answerDNS(g.ctx, req, "udp", guest); resp != nil {
				pc.WriteTo(resp, from)
			}
		}()
	}
}

func (g *Gateway) serveDNSTCP(ln *gonet.TCPListener) {
	defer g.wg.Done()
	defer g.untrack(ln)
	for {
		c, err := ln.Accept()
		if err != nil {
			return // closed
		}
		if !g.enter() {
			c.Close()
			return
		}
		go func() {
			defer g.wg.Done()
			g.serveDNSConn(c)
		}()
	}
}

// serveDNSConn answers length-prefixed queries on one TCP connection
// until the guest closes it or it idles.
func (g *Gateway) serveDNSConn(c net.Conn) {
	if !g.beginFlow() {
		c.Close()
		return
	}
	defer g.endFlow()
	if !g.track(c) {
		return
	}
	defer g.untrack(c)
	defer c.Close()
	guest := c.RemoteAddr().(*net.TCPAddr).AddrPort()
	br := bufio.NewReader(c)
	for {
		c.SetDeadline(time.Now().Add(dnsTCPIdle))
		var l [2]byte
		if _, err := io.ReadFull(br, l[:]); err != nil {
			return
		}
		req := make([]byte, binary.BigEndian.Uint16(l[:]))
		if _, err := io.ReadFull(br, req); err != nil {
			return
		}
		resp := g.answerDNS(g.ctx, req, "tcp", guest)
		if resp == nil {
			return
		}
		out := binary.BigEndian.AppendUint16(make([]byte, 0, 2+len(resp)), uint16(len(resp)))
		if _, err := c.Write(append(out, resp...)); err != nil {
			return
		}
	}
}

// answerDNS answers one query from the guest and records it as a flow. It
// returns nil for input that deserves no answer.
func (g *Gateway) answerDNS(ctx context.Context, raw []byte, proto string, guest netip.AddrPort) []byte {
	var q dns.Msg
	if err := q.Unpack(raw); err != nil || q.Response {
		return nil
	}
	fl := Flow{
		Time: time.Now(), Direction: Egress, Proto: proto, Guest: guest,
		Remote: netip.AddrPortFrom(g.cfg.DNSIP, 53), DNS: true, Verdict: Allow,
	}
	resp := new(dns.Msg)
	resp.SetReply(&q)
	resp.RecursionAvailable = true
	switch {
	case q.Opcode != dns.OpcodeQuery:
		resp.Rcode = dns.RcodeNotImplemented
		fl.Verdict, fl.Reason = Deny, "only standard queries are answered"
	case len(q.Question) != 1:
		resp.Rcode = dns.RcodeFormatError
		fl.Verdict, fl.Reason = Deny, "a query must ask exactly one question"
	default:
		question := q.Question[0]
		name := policy.NormalizeName(question.Name)
		fl.Name = name
		if rrs, ok := g.localAnswer(question, name); ok {
			resp.Answer = rrs
			fl.Rule = "local"
		} else if v := g.pol.EvaluateName(name); v.Allow {
			fl.Rule = v.Rule
			if err := g.forwardDNS(ctx, question, name, resp); err != nil {
				resp.Rcode = dns.RcodeServerFailure
				fl.Error = err.Error()
				g.logf("dns: %s: %v", name, err)
			}
		} else {
			resp.Rcode = dns.RcodeRefused
			fl.Verdict, fl.Reason = Deny, v.Reason
		}
	}

	size := dns.MaxMsgSize
	if proto == "udp" {
		size = dns.MinMsgSize
	}
	if opt := q.IsEdns0(); opt != nil {
		if proto == "udp" {
			size = min(max(int(opt.UDPSize()), dns.MinMsgSize), dnsMaxUDPSize)
		}
		resp.SetEdns0(dnsMaxUDPSize, false)
	}
	resp.Truncate(size)
	out, err := resp.Pack()
	if err != nil {
		g.logf("dns: packing answer for %q: %v", fl.Name, err)
		return nil
	}
	fl.BytesOut, fl.BytesIn = int64(len(raw)), int64(len(out))
	fl.Duration = time.Since(fl.Time)
	if fl.Verdict == Deny {
		g.denyOnce(fl) // a resolver retries; one line per name and window
	} else {
		g.rec.record(fl)
	}
	return out
}

// localAnswer answers the names the gateway owns: localhost (and names
// under it, RFC 6761), the instance's hostname and HostAlias. ok is false
// for any other name.
func (g *Gateway) localAnswer(q dns.Question, name string) (rrs []dns.RR, ok bool) {
	var v4, v6 netip.Addr
	switch {
	case name == "localhost" || strings.HasSuffix(name, ".localhost"):
		v4, v6 = netip.MustParseAddr("127.0.0.1"), netip.IPv6Loopback()
	case name == HostAlias:
		v4 = g.cfg.GatewayIP
	case g.cfg.Hostname != "" && name == policy.NormalizeName(g.cfg.Hostname):
		v4 = g.cfg.GuestIP
	default:
		return nil, false
	}
	if q.Qclass != dns.ClassINET {
		return nil, true
	}
	hdr := dns.RR_Header{Name: q.Name, Class: dns.ClassINET, Ttl: localTTL}
	switch {
	case q.Qtype == dns.TypeA:
		hdr.Rrtype = dns.TypeA
		rrs = append(rrs, &dns.A{Hdr: hdr, A: v4.AsSlice()})
	case q.Qtype == dns.TypeAAAA && v6.IsValid():
		hdr.Rrtype = dns.TypeAAAA
		rrs = append(rrs, &dns.AAAA{Hdr: hdr, AAAA: v6.AsSlice()})
	}
	return rrs, true // other types: the name exists, with no such record
}

// forwardDNS resolves an allowed name upstream, fills resp from the
// answer and teaches the policy the addresses it returned.
func (g *Gateway) forwardDNS(ctx context.Context, question dns.Question, name string, resp *dns.Msg) error {
	if !g.upstream.IsValid() {
		return errors.New("no DNS upstream configured")
	}
	up := new(dns.Msg)
	up.SetQuestion(dns.Fqdn(name), question.Qtype)
	up.Question[0].Qclass = question.Qclass
	up.SetEdns0(dnsMaxUDPSize, false)
	ctx, cancel := context.WithTimeout(ctx, dnsUpstreamTimeout)
	defer cancel()
	c := &dns.Client{Net: "udp", UDPSize: dnsMaxUDPSize}
	r, _, err := c.ExchangeContext(ctx, up, g.upstream.String())
	if err == nil && r.Truncated {
		c.Net = "tcp"
		r, _, err = c.ExchangeContext(ctx, up, g.upstream.String())
	}
	if err != nil {
		return fmt.Errorf("upstream %s: %w", g.upstream, err)
	}
	resp.Rcode = r.Rcode
	answer, addrs, ttl := g.filterAnswer(name, r.Answer)
	resp.Answer = answer
	for _, rr := range r.Ns {
		rr.Header().Ttl = min(rr.Header().Ttl, g.ceilingSeconds())
		resp.Ns = append(resp.Ns, rr)
	}
	if len(addrs) > 0 {
		g.pol.Learn(name, addrs, ttl)
	}
	return nil
}

func (g *Gateway) ceilingSeconds() uint32 {
	return uint32(g.pol.TTLCeiling() / time.Second)
}

// filterAnswer keeps the records that answer qname — the name itself and
// the CNAME chain from it — and drops anything else an upstream put in.
// TTLs are capped at the policy's ceiling; host-loopback addresses become
// the loopback alias (IPv4) or are dropped (IPv6: the guest link has
// none). It returns the kept records, the addresses to learn and the
// smallest TTL on the chain.
func (g *Gateway) filterAnswer(qname string, rrs []dns.RR) (out []dns.RR, addrs []netip.Addr, ttl time.Duration) {
	chain := map[string]bool{dns.Fqdn(qname): true}
	for changed := true; changed; {
		changed = false
		for _, rr := range rrs {
			if c, ok := rr.(*dns.CNAME); ok && chain[strings.ToLower(c.Hdr.Name)] && !chain[strings.ToLower(c.Target)] {
				chain[strings.ToLower(c.Target)] = true
				changed = true
			}
		}
	}
	ceiling := g.ceilingSeconds()
	minTTL := ceiling
	for _, rr := range rrs {
		h := rr.Header()
		if !chain[strings.ToLower(h.Name)] {
			continue
		}
		h.Ttl = min(h.Ttl, ceiling)
		switch v := rr.(type) {
		case *dns.A:
			a, ok := netip.AddrFromSlice(v.A.To4())
			if !ok {
				continue
			}
			if a.IsLoopback() {
				v.A = g.cfg.GatewayIP.AsSlice()
			} else {
				addrs = append(addrs, a)
			}
		case *dns.AAAA:
			a, ok := netip.AddrFromSlice(v.AAAA)
			if !ok || a.IsLoopback() {
				continue
			}
			addrs = append(addrs, a)
		}
		minTTL = min(minTTL, h.Ttl)
		out = append(out, rr)
	}
	return out, addrs, time.Duration(minTTL) * time.Second
}

// upstreamFromResolvConf returns the first nameserver in a resolv.conf.
func upstreamFromResolvConf(path string) (netip.AddrPort, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("reading the host's resolver: %w", err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "nameserver" {
			if a, err := netip.ParseAddr(f[1]); err == nil {
				return netip.AddrPortFrom(a, 53), nil
			}
		}
	}
	return netip.AddrPort{}, fmt.Errorf("no nameserver in %s", path)
}
