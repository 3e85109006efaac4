// Package policy decides which network flows a hull guest may start.
//
// A Policy is built from the spec's egress rules and answers two questions:
// may the guest open a TCP or UDP flow to this address and port
// (Evaluate), and may the guest resolve this DNS name (EvaluateName). It
// also keeps the table of addresses learned from DNS answers for allowed
// names (Learn), which is what makes a host rule dialable.
//
// The package does no I/O: it never resolves, dials or logs. It imports
// neither the gateway nor any VM code (a test enforces this), so the
// rules can be reasoned about, and tested, on their own.
//
// # Semantics
//
//   - Deny by default: a flow is allowed only when a rule allows it.
//   - A cidr rule allows a destination inside its prefix (IPv4 or IPv6),
//     on one of its ports, for its protocol (tcp unless it says udp).
//     Overlapping rules are fine; the first matching rule, in the order
//     written, is the one reported.
//   - A host rule allows resolving its name: "api.example.com" exactly,
//     or "*.example.com" for any name below example.com (one or more
//     labels; not example.com itself). The addresses a DNS answer for an
//     allowed name returned become dialable on that rule's ports and
//     protocol until the answer's TTL expires, clamped to
//     [TTLFloor, TTLCeiling] (default 30 s and 1 h). The floor lets a
//     client connect right after a TTL-0 answer; the ceiling bounds how
//     long a stale answer keeps a door open. Expiry stops new flows only;
//     a flow already allowed is not cut.
//   - Special addresses are denied unless a cidr rule names them. They are
//     unspecified (0.0.0.0/8, ::), loopback (127.0.0.0/8, ::1), link-local
//     (169.254.0.0/16, fe80::/10), cloud metadata (169.254.169.254,
//     100.100.100.200, fd00:ec2::254), multicast (224.0.0.0/4, ff00::/8),
//     broadcast (255.255.255.255) and NAT64 forms of any of these.
//     "Names them" is precise: the rule's prefix lies inside the most
//     specific special range that contains the destination. So
//     127.0.0.1/32 and 127.0.0.0/8 both allow 127.0.0.1, but 0.0.0.0/0
//     does not; the metadata address is its own range, so only
//     169.254.169.254/32 allows it — 169.254.0.0/16 does not. A host rule
//     never makes a special address dialable, whatever DNS says (the
//     DNS-rebinding defence).
//   - IPv4-mapped IPv6 addresses (::ffff:a.b.c.d) are evaluated as the
//     IPv4 address they carry.
//
// Rules always name the real destination. The gateway's loopback alias
// (the guest's 10.0.2.2) is translated by the caller to 127.0.0.1 before
// Evaluate is called, so reaching the host's loopback port P takes a cidr
// rule containing 127.0.0.1 (inside 127.0.0.0/8) that lists P.
//
// A Policy is safe for concurrent use.
package policy

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/hullvm/hull/internal/spec"
)

// Default bounds applied to DNS TTLs before an answer's addresses are
// learned.
const (
	DefaultTTLFloor   = 30 * time.Second
	DefaultTTLCeiling = time.Hour
)

// MaxLearned bounds the learned table (distinct addresses). When it is
// full, new addresses are not learned until old ones expire: the table
// fails closed rather than growing without bound under a guest that
// resolves name after name.
const MaxLearned = 65536

// Protocols understood by Evaluate.
const (
	TCP  = "tcp"
	UDP  = "udp"
	ICMP = "icmp"
)

// Options tune a Policy. The zero value gives the defaults.
type Options struct {
	// Now is the clock used for TTL expiry; nil means time.Now.
	Now func() time.Time
	// TTLFloor and TTLCeiling clamp learned TTLs; zero means the default.
	TTLFloor, TTLCeiling time.Duration
}

// Verdict is the answer to one question.
type Verdict struct {
	Allow bool
	// Rule is the matching rule in --allow form, e.g.
	// "127.0.0.1/32:5432/tcp"; empty when denied.
	Rule string
	// Name is the DNS name through which a host rule allowed the
	// destination, when it did.
	Name string
	// Reason says why, in a few words, for flow logs and warnings.
	Reason string
}

// Policy is an immutable rule set plus the learned DNS table.
type Policy struct {
	cidrs []cidrRule
	hosts []hostRule

	now            func() time.Time
	floor, ceiling time.Duration

	mu        sync.Mutex
	learned   map[netip.Addr]map[string]time.Time // address → name → expiry
	lastSweep time.Time
}

type cidrRule struct {
	text  string
	pfx   netip.Prefix
	proto string
	ports []spec.PortRange
}

type hostRule struct {
	text     string
	name     string // normalised; without the "*." of a wildcard
	wildcard bool
	proto    string
	ports    []spec.PortRange
}

// New builds a Policy. Rules are validated (and their defaults filled) on
// a copy; an invalid rule is an error naming it. No rules is not an
// error: that policy denies everything.
func New(rules []spec.EgressRule, opt Options) (*Policy, error) {
	p := &Policy{
		now:     opt.Now,
		floor:   opt.TTLFloor,
		ceiling: opt.TTLCeiling,
		learned: map[netip.Addr]map[string]time.Time{},
	}
	if p.now == nil {
		p.now = time.Now
	}
	if p.floor == 0 {
		p.floor = DefaultTTLFloor
	}
	if p.ceiling == 0 {
		p.ceiling = DefaultTTLCeiling
	}
	if p.floor < 0 || p.ceiling < p.floor {
		return nil, fmt.Errorf("policy: TTL floor %v and ceiling %v: want 0 <= floor <= ceiling", p.floor, p.ceiling)
	}
	for i, r := range rules {
		r.Ports = append([]spec.PortRange(nil), r.Ports...)
		if err := r.Check(); err != nil {
			return nil, fmt.Errorf("egress rule %d (%s): %w", i+1, r, err)
		}
		for _, pr := range r.Ports {
			if pr.Lo < 1 || pr.Hi > 65535 || pr.Lo > pr.Hi {
				return nil, fmt.Errorf("egress rule %d (%s): bad port range %s", i+1, r, pr)
			}
		}
		if r.Host != "" {
			name := NormalizeName(r.Host)
			h := hostRule{text: r.String(), name: name, proto: r.Proto, ports: r.Ports}
			if rest, ok := strings.CutPrefix(name, "*."); ok {
				h.name, h.wildcard = rest, true
			}
			p.hosts = append(p.hosts, h)
			continue
		}
		pfx, err := netip.ParsePrefix(r.CIDR)
		if err != nil {
			return nil, fmt.Errorf("egress rule %d (%s): %w", i+1, r, err)
		}
		if pfx.Addr().Is4In6() {
			if pfx.Bits() < 96 {
				return nil, fmt.Errorf("egress rule %d (%s): an IPv4-mapped prefix must be /96 or longer", i+1, r)
			}
			pfx = netip.PrefixFrom(pfx.Addr().Unmap(), pfx.Bits()-96)
		}
		p.cidrs = append(p.cidrs, cidrRule{text: r.String(), pfx: pfx, proto: r.Proto, ports: r.Ports})
	}
	return p, nil
}

// HasHostRules reports whether any rule names a DNS name, i.e. whether
// the gateway needs an upstream resolver at all.
func (p *Policy) HasHostRules() bool { return len(p.hosts) > 0 }

// Rules returns the rules in --allow form, in the order written.
func (p *Policy) Rules() []string {
	var out []string
	for _, c := range p.cidrs {
		out = append(out, c.text)
	}
	for _, h := range p.hosts {
		out = append(out, h.text)
	}
	return out
}

// NormalizeName lowercases a DNS name and drops its trailing dot.
func NormalizeName(name string) string {
	return strings.TrimSuffix(strings.ToLower(strings.TrimSpace(name)), ".")
}

// EvaluateName decides whether the guest may resolve name. It is allowed
// when a host rule matches it, whatever that rule's ports.
func (p *Policy) EvaluateName(name string) Verdict {
	n := NormalizeName(name)
	if n == "" {
		return Verdict{Reason: "empty name"}
	}
	for _, h := range p.hosts {
		if h.matches(n) {
			return Verdict{Allow: true, Rule: h.text, Name: n, Reason: "name allowed by host rule"}
		}
	}
	return Verdict{Name: n, Reason: "no host rule names " + n}
}

func (h hostRule) matches(name string) bool {
	if h.wildcard {
		return strings.HasSuffix(name, "."+h.name)
	}
	return name == h.name
}

// Learn records that name resolved to addrs with the given TTL, so those
// addresses become dialable on the ports of the host rules matching name.
// It returns the TTL actually kept (clamped to the floor and ceiling), or
// 0 when nothing was learned: the name is not allowed, or the table is
// full. Special addresses are never learned.
func (p *Policy) Learn(name string, addrs []netip.Addr, ttl time.Duration) time.Duration {
	n := NormalizeName(name)
	if !p.EvaluateName(n).Allow {
		return 0
	}
	ttl = p.ClampTTL(ttl)
	now := p.now()
	exp := now.Add(ttl)

	p.mu.Lock()
	defer p.mu.Unlock()
	if now.Sub(p.lastSweep) >= p.floor || len(p.learned) >= MaxLearned {
		p.sweepLocked(now)
	}
	learned := false
	for _, a := range addrs {
		a = a.Unmap().WithZone("")
		if !a.IsValid() {
			continue
		}
		if _, _, special := classify(a); special {
			continue
		}
		names := p.learned[a]
		if names == nil {
			if len(p.learned) >= MaxLearned {
				continue
			}
			names = map[string]time.Time{}
			p.learned[a] = names
		}
		if exp.After(names[n]) {
			names[n] = exp
		}
		learned = true
	}
	if !learned {
		return 0
	}
	return ttl
}

// ClampTTL applies the policy's floor and ceiling to a DNS TTL.
func (p *Policy) ClampTTL(ttl time.Duration) time.Duration {
	return min(max(ttl, p.floor), p.ceiling)
}

// TTLCeiling is the longest time a learned address stays dialable. The
// gateway caps the TTLs it hands the guest to it, so the guest never
// caches an answer longer than the policy honours it.
func (p *Policy) TTLCeiling() time.Duration { return p.ceiling }

func (p *Policy) sweepLocked(now time.Time) {
	p.lastSweep = now
	for a, names := range p.learned {
		for n, exp := range names {
			if !now.Before(exp) {
				delete(names, n)
			}
		}
		if len(names) == 0 {
			delete(p.learned, a)
		}
	}
}

// Evaluate decides whether the guest may open a flow of proto ("tcp" or
// "udp"; anything else is denied) to dst. dst is the real destination.
func (p *Policy) Evaluate(proto string, dst netip.AddrPort) Verdict {
	proto = strings.ToLower(proto)
	addr := dst.Addr().Unmap().WithZone("")
	port := int(dst.Port())
	if !addr.IsValid() {
		return Verdict{Reason: "invalid destination"}
	}
	if proto != TCP && proto != UDP {
		return Verdict{Reason: proto + " is never forwarded"}
	}
	kind, specialRange, special := classify(addr)

	var miss missReason
	for _, c := range p.cidrs {
		if !c.pfx.Contains(addr) {
			continue
		}
		if special && !(c.pfx.Bits() >= specialRange.Bits() && specialRange.Contains(c.pfx.Addr())) {
			miss.note(3, fmt.Sprintf("%s is %s; only a cidr rule inside %s allows it (%s is too broad)", addr, kind, specialRange, c.text))
			continue
		}
		if c.proto != proto {
			miss.note(1, fmt.Sprintf("rule %s is %s only", c.text, c.proto))
			continue
		}
		if !inPorts(c.ports, port) {
			miss.note(2, fmt.Sprintf("rule %s does not list port %d", c.text, port))
			continue
		}
		return Verdict{Allow: true, Rule: c.text, Reason: "address allowed by cidr rule"}
	}
	if special {
		if miss.text == "" {
			miss.text = fmt.Sprintf("%s is %s; only a cidr rule inside %s allows it", addr, kind, specialRange)
		}
		return Verdict{Reason: miss.text}
	}

	if v, ok := p.evaluateLearned(proto, addr, port, &miss); ok {
		return v
	}
	if miss.text == "" {
		miss.text = fmt.Sprintf("no rule allows %s", dst)
	}
	return Verdict{Reason: miss.text}
}

func (p *Policy) evaluateLearned(proto string, addr netip.Addr, port int, miss *missReason) (Verdict, bool) {
	now := p.now()
	p.mu.Lock()
	var names []string
	expired := ""
	for n, exp := range p.learned[addr] {
		if now.Before(exp) {
			names = append(names, n)
		} else {
			expired = n
		}
	}
	p.mu.Unlock()
	sort.Strings(names)
	for _, n := range names {
		for _, h := range p.hosts {
			if !h.matches(n) {
				continue
			}
			if h.proto != proto {
				miss.note(1, fmt.Sprintf("rule %s is %s only", h.text, h.proto))
				continue
			}
			if !inPorts(h.ports, port) {
				miss.note(2, fmt.Sprintf("rule %s does not list port %d", h.text, port))
				continue
			}
			return Verdict{Allow: true, Rule: h.text, Name: n, Reason: "address resolved for host rule"}, true
		}
	}
	if len(names) == 0 && expired != "" {
		miss.note(1, fmt.Sprintf("the DNS answer for %s that made %s dialable has expired", expired, addr))
	}
	return Verdict{}, false
}

// missReason keeps the most telling explanation of a denial.
type missReason struct {
	rank int
	text string
}

func (m *missReason) note(rank int, text string) {
	if rank > m.rank {
		m.rank, m.text = rank, text
	}
}

func inPorts(ports []spec.PortRange, port int) bool {
	for _, r := range ports {
		if port >= r.Lo && port <= r.Hi {
			return true
		}
	}
	return false
}

// special ranges, most specific first within each family so that the
// first containing range is the most specific one.
var specials = []struct {
	pfx  netip.Prefix
	kind string
}{
	{netip.MustParsePrefix("169.254.169.254/32"), "cloud metadata"},
	{netip.MustParsePrefix("100.100.100.200/32"), "cloud metadata"},
	{netip.MustParsePrefix("255.255.255.255/32"), "broadcast"},
	{netip.MustParsePrefix("0.0.0.0/8"), "unspecified"},
	{netip.MustParsePrefix("127.0.0.0/8"), "loopback"},
	{netip.MustParsePrefix("169.254.0.0/16"), "link-local"},
	{netip.MustParsePrefix("224.0.0.0/4"), "multicast"},
	{netip.MustParsePrefix("fd00:ec2::254/128"), "cloud metadata"},
	{netip.MustParsePrefix("::/128"), "unspecified"},
	{netip.MustParsePrefix("::1/128"), "loopback"},
	{netip.MustParsePrefix("fe80::/10"), "link-local"},
	{netip.MustParsePrefix("ff00::/8"), "multicast"},
}

var nat64 = netip.MustParsePrefix("64:ff9b::/96")

// classify reports whether addr is special and, if so, its kind and the
// most specific special range holding it. A NAT64 address carrying a
// special IPv4 address is special and only its exact /128 names it.
func classify(addr netip.Addr) (kind string, rng netip.Prefix, special bool) {
	for _, s := range specials {
		if s.pfx.Contains(addr) {
			return s.kind, s.pfx, true
		}
	}
	if nat64.Contains(addr) {
		b := addr.As16()
		v4 := netip.AddrFrom4([4]byte(b[12:16]))
		if k, _, ok := classify(v4); ok {
			return k + " (via NAT64)", netip.PrefixFrom(addr, 128), true
		}
	}
	return "", netip.Prefix{}, false
}

// IsSpecial reports whether addr is in an always-denied range, and which.
func IsSpecial(addr netip.Addr) (kind string, ok bool) {
	kind, _, ok = classify(addr.Unmap().WithZone(""))
	return kind, ok
}
