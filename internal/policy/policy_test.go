package policy

import (
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hullvm/hull/internal/spec"
)

// rules parses --allow forms into rules.
func rules(t *testing.T, allows ...string) []spec.EgressRule {
	t.Helper()
	var out []spec.EgressRule
	for _, a := range allows {
		r, err := spec.ParseAllow(a)
		if err != nil {
			t.Fatalf("ParseAllow(%q): %v", a, err)
		}
		out = append(out, r)
	}
	return out
}

func mustNew(t *testing.T, rs []spec.EgressRule, opt Options) *Policy {
	t.Helper()
	p, err := New(rs, opt)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return p
}

func TestEvaluate(t *testing.T) {
	tests := []struct {
		name   string
		rules  []string
		proto  string
		dst    string
		allow  bool
		rule   string // want Rule when allowed
		reason string // want substring of Reason when denied
	}{
		{name: "no rules deny", proto: "tcp", dst: "93.184.216.34:443", reason: "no rule allows"},
		{name: "cidr exact", rules: []string{"10.1.2.3:5432"}, proto: "tcp", dst: "10.1.2.3:5432", allow: true, rule: "10.1.2.3/32:5432/tcp"},
		{name: "cidr range", rules: []string{"10.0.0.0/8:443"}, proto: "tcp", dst: "10.200.1.1:443", allow: true, rule: "10.0.0.0/8:443/tcp"},
		{name: "cidr outside", rules: []string{"10.0.0.0/8:443"}, proto: "tcp", dst: "11.0.0.1:443", reason: "no rule allows"},
		{name: "port not listed", rules: []string{"10.0.0.0/8:443"}, proto: "tcp", dst: "10.0.0.1:80", reason: "does not list port 80"},
		{name: "port range low edge", rules: []string{"10.0.0.0/8:8000-8100"}, proto: "tcp", dst: "10.0.0.1:8000", allow: true, rule: "10.0.0.0/8:8000-8100/tcp"},
		{name: "port range high edge", rules: []string{"10.0.0.0/8:8000-8100"}, proto: "tcp", dst: "10.0.0.1:8100", allow: true, rule: "10.0.0.0/8:8000-8100/tcp"},
		{name: "port range past edge", rules: []string{"10.0.0.0/8:8000-8100"}, proto: "tcp", dst: "10.0.0.1:8101", reason: "does not list port 8101"},
		{name: "port list", rules: []string{"10.0.0.0/8:22,80,443"}, proto: "tcp", dst: "10.0.0.1:80", allow: true, rule: "10.0.0.0/8:22,80,443/tcp"},
		{name: "proto mismatch udp flow tcp rule", rules: []string{"10.0.0.0/8:53"}, proto: "udp", dst: "10.0.0.1:53", reason: "tcp only"},
		{name: "proto mismatch tcp flow udp rule", rules: []string{"10.0.0.0/8:53/udp"}, proto: "tcp", dst: "10.0.0.1:53", reason: "udp only"},
		{name: "udp rule", rules: []string{"10.0.0.0/8:53/udp"}, proto: "udp", dst: "10.0.0.1:53", allow: true, rule: "10.0.0.0/8:53/udp"},
		{name: "icmp never", rules: []string{"0.0.0.0/0:1-65535"}, proto: "icmp", dst: "8.8.8.8:0", reason: "never forwarded"},
		{name: "overlap first wins", rules: []string{"10.0.0.0/8:443", "10.1.0.0/16:443"}, proto: "tcp", dst: "10.1.0.1:443", allow: true, rule: "10.0.0.0/8:443/tcp"},
		{name: "overlap second gives port", rules: []string{"10.0.0.0/8:443", "10.1.0.0/16:8080"}, proto: "tcp", dst: "10.1.0.1:8080", allow: true, rule: "10.1.0.0/16:8080/tcp"},
		{name: "overlap neither port", rules: []string{"10.0.0.0/8:443", "10.1.0.0/16:8080"}, proto: "tcp", dst: "10.1.0.1:22", reason: "does not list port 22"},
		{name: "ipv6 cidr", rules: []string{"[2001:db8::/32]:443"}, proto: "tcp", dst: "[2001:db8::1]:443", allow: true, rule: "2001:db8::/32:443/tcp"},
		{name: "ipv6 outside", rules: []string{"[2001:db8::/32]:443"}, proto: "tcp", dst: "[2001:db9::1]:443", reason: "no rule allows"},
		{name: "ipv4 rule does not match ipv6", rules: []string{"0.0.0.0/0:443"}, proto: "tcp", dst: "[2001:db8::1]:443", reason: "no rule allows"},
		{name: "ipv4-mapped evaluated as ipv4", rules: []string{"10.0.0.0/8:443"}, proto: "tcp", dst: "[::ffff:10.0.0.1]:443", allow: true, rule: "10.0.0.0/8:443/tcp"},
		{name: "ipv4-mapped metadata still special", rules: []string{"0.0.0.0/0:80"}, proto: "tcp", dst: "[::ffff:169.254.169.254]:80", reason: "cloud metadata"},

		// Special ranges.
		{name: "metadata denied without rule", proto: "tcp", dst: "169.254.169.254:80", reason: "cloud metadata"},
		{name: "metadata denied by broad rule", rules: []string{"0.0.0.0/0:80"}, proto: "tcp", dst: "169.254.169.254:80", reason: "too broad"},
		{name: "metadata denied by link-local rule", rules: []string{"169.254.0.0/16:80"}, proto: "tcp", dst: "169.254.169.254:80", reason: "only a cidr rule inside 169.254.169.254/32"},
		{name: "metadata allowed when named", rules: []string{"169.254.169.254/32:80"}, proto: "tcp", dst: "169.254.169.254:80", allow: true, rule: "169.254.169.254/32:80/tcp"},
		{name: "link-local denied by broad", rules: []string{"128.0.0.0/1:80"}, proto: "tcp", dst: "169.254.1.1:80", reason: "link-local"},
		{name: "link-local allowed when named", rules: []string{"169.254.0.0/16:80"}, proto: "tcp", dst: "169.254.1.1:80", allow: true, rule: "169.254.0.0/16:80/tcp"},
		{name: "ipv6 link-local denied", rules: []string{"[::/0]:80"}, proto: "tcp", dst: "[fe80::1]:80", reason: "link-local"},
		{name: "ipv6 link-local named", rules: []string{"[fe80::/64]:80"}, proto: "tcp", dst: "[fe80::1]:80", allow: true, rule: "fe80::/64:80/tcp"},
		{name: "ipv6 metadata denied by ULA rule", rules: []string{"[fd00::/8]:80"}, proto: "tcp", dst: "[fd00:ec2::254]:80", reason: "cloud metadata"},
		{name: "ipv6 loopback denied", rules: []string{"[::/0]:5432"}, proto: "tcp", dst: "[::1]:5432", reason: "loopback"},
		{name: "ipv6 loopback named", rules: []string{"[::1]:5432"}, proto: "tcp", dst: "[::1]:5432", allow: true, rule: "::1/128:5432/tcp"},
		{name: "loopback denied by default route", rules: []string{"0.0.0.0/0:5432"}, proto: "tcp", dst: "127.0.0.1:5432", reason: "loopback"},
		{name: "loopback via alias /32", rules: []string{"127.0.0.1/32:5432"}, proto: "tcp", dst: "127.0.0.1:5432", allow: true, rule: "127.0.0.1/32:5432/tcp"},
		{name: "loopback via alias /8", rules: []string{"127.0.0.0/8:5432"}, proto: "tcp", dst: "127.0.0.1:5432", allow: true, rule: "127.0.0.0/8:5432/tcp"},
		{name: "loopback other port", rules: []string{"127.0.0.1/32:5432"}, proto: "tcp", dst: "127.0.0.1:22", reason: "does not list port 22"},
		{name: "loopback other address", rules: []string{"127.0.0.1/32:5432"}, proto: "tcp", dst: "127.0.0.2:5432", reason: "loopback"},
		{name: "unspecified", rules: []string{"0.0.0.0/0:80"}, proto: "tcp", dst: "0.0.0.0:80", reason: "unspecified"},
		{name: "ipv6 unspecified", rules: []string{"[::/0]:80"}, proto: "tcp", dst: "[::]:80", reason: "unspecified"},
		{name: "multicast", rules: []string{"0.0.0.0/0:5353/udp"}, proto: "udp", dst: "224.0.0.251:5353", reason: "multicast"},
		{name: "ipv6 multicast", rules: []string{"[::/0]:5353/udp"}, proto: "udp", dst: "[ff02::fb]:5353", reason: "multicast"},
		{name: "broadcast", rules: []string{"0.0.0.0/0:67/udp"}, proto: "udp", dst: "255.255.255.255:67", reason: "broadcast"},
		{name: "nat64 metadata", rules: []string{"[64:ff9b::/96]:80"}, proto: "tcp", dst: "[64:ff9b::a9fe:a9fe]:80", reason: "via NAT64"},
		{name: "nat64 public", rules: []string{"[64:ff9b::/96]:80"}, proto: "tcp", dst: "[64:ff9b::808:808]:80", allow: true, rule: "64:ff9b::/96:80/tcp"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustNew(t, rules(t, tt.rules...), Options{})
			got := p.Evaluate(tt.proto, netip.MustParseAddrPort(tt.dst))
			if got.Allow != tt.allow {
				t.Fatalf("Evaluate(%s %s) = %+v; want allow=%v", tt.proto, tt.dst, got, tt.allow)
			}
			if tt.allow && got.Rule != tt.rule {
				t.Errorf("Rule = %q; want %q", got.Rule, tt.rule)
			}
			if !tt.allow && (got.Rule != "" || !strings.Contains(got.Reason, tt.reason)) {
				t.Errorf("denied with Rule %q, Reason %q; want no rule and a reason containing %q", got.Rule, got.Reason, tt.reason)
			}
		})
	}
}

func TestEvaluateName(t *testing.T) {
	tests := []struct {
		rules []string
		name  string
		allow bool
		rule  string
	}{
		{rules: nil, name: "example.com"},
		{rules: []string{"api.example.com:443"}, name: "api.example.com", allow: true, rule: "api.example.com:443/tcp"},
		{rules: []string{"api.example.com:443"}, name: "API.Example.COM.", allow: true, rule: "api.example.com:443/tcp"},
		{rules: []string{"api.example.com:443"}, name: "x.api.example.com"},
		{rules: []string{"api.example.com:443"}, name: "example.com"},
		{rules: []string{"api.example.com:443"}, name: "api.example.com.evil.net"},
		{rules: []string{"*.example.com:443"}, name: "a.example.com", allow: true, rule: "*.example.com:443/tcp"},
		{rules: []string{"*.example.com:443"}, name: "a.b.example.com", allow: true, rule: "*.example.com:443/tcp"},
		{rules: []string{"*.example.com:443"}, name: "example.com"},
		{rules: []string{"*.example.com:443"}, name: "badexample.com"},
		{rules: []string{"10.0.0.0/8:443"}, name: "10.in-addr.arpa"},
	}
	for _, tt := range tests {
		t.Run(tt.name+"/"+strings.Join(tt.rules, ","), func(t *testing.T) {
			p := mustNew(t, rules(t, tt.rules...), Options{})
			got := p.EvaluateName(tt.name)
			if got.Allow != tt.allow || got.Rule != tt.rule {
				t.Errorf("EvaluateName(%q) = %+v; want allow=%v rule=%q", tt.name, got, tt.allow, tt.rule)
			}
		})
	}
}

// fakeClock is an injectable clock for TTL tests.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

func TestLearnedAddresses(t *testing.T) {
	ip := netip.MustParseAddr("93.184.216.34")
	dst := func(port uint16) netip.AddrPort { return netip.AddrPortFrom(ip, port) }

	type step struct {
		do     string // "learn NAME TTL", "advance D", "eval PROTO PORT"
		allow  bool
		rule   string
		reason string
	}
	tests := []struct {
		name  string
		rules []string
		steps []step
	}{
		{
			name:  "learned address dialable on rule ports only",
			rules: []string{"api.example.com:443"},
			steps: []step{
				{do: "eval tcp 443", reason: "no rule allows"},
				{do: "learn api.example.com 300s"},
				{do: "eval tcp 443", allow: true, rule: "api.example.com:443/tcp"},
				{do: "eval tcp 80", reason: "does not list port 80"},
				{do: "eval udp 443", reason: "tcp only"},
			},
		},
		{
			name:  "expires after ttl",
			rules: []string{"api.example.com:443"},
			steps: []step{
				{do: "learn api.example.com 120s"},
				{do: "advance 119s"},
				{do: "eval tcp 443", allow: true, rule: "api.example.com:443/tcp"},
				{do: "advance 1s"},
				{do: "eval tcp 443", reason: "expired"},
			},
		},
		{
			name:  "ttl floor",
			rules: []string{"api.example.com:443"},
			steps: []step{
				{do: "learn api.example.com 0s"},
				{do: "advance 29s"},
				{do: "eval tcp 443", allow: true, rule: "api.example.com:443/tcp"},
				{do: "advance 1s"},
				{do: "eval tcp 443", reason: "expired"},
			},
		},
		{
			name:  "ttl ceiling",
			rules: []string{"api.example.com:443"},
			steps: []step{
				{do: "learn api.example.com 86400s"},
				{do: "advance 3599s"},
				{do: "eval tcp 443", allow: true, rule: "api.example.com:443/tcp"},
				{do: "advance 1s"},
				{do: "eval tcp 443", reason: "expired"},
			},
		},
		{
			name:  "refresh extends",
			rules: []string{"api.example.com:443"},
			steps: []step{
				{do: "learn api.example.com 60s"},
				{do: "advance 50s"},
				{do: "learn api.example.com 60s"},
				{do: "advance 50s"},
				{do: "eval tcp 443", allow: true, rule: "api.example.com:443/tcp"},
			},
		},
		{
			name:  "disallowed name not learned",
			rules: []string{"api.example.com:443"},
			steps: []step{
				{do: "learn evil.example.net 300s"},
				{do: "eval tcp 443", reason: "no rule allows"},
			},
		},
		{
			name:  "wildcard",
			rules: []string{"*.example.com:443"},
			steps: []step{
				{do: "learn cdn.example.com 300s"},
				{do: "eval tcp 443", allow: true, rule: "*.example.com:443/tcp"},
			},
		},
		{
			name:  "two names share an address, each its ports",
			rules: []string{"a.example.com:443", "b.example.com:8443"},
			steps: []step{
				{do: "learn a.example.com 300s"},
				{do: "eval tcp 8443", reason: "does not list port 8443"},
				{do: "learn b.example.com 300s"},
				{do: "eval tcp 8443", allow: true, rule: "b.example.com:8443/tcp"},
				{do: "eval tcp 443", allow: true, rule: "a.example.com:443/tcp"},
			},
		},
		{
			name:  "udp host rule",
			rules: []string{"ntp.example.com:123/udp"},
			steps: []step{
				{do: "learn ntp.example.com 300s"},
				{do: "eval udp 123", allow: true, rule: "ntp.example.com:123/udp"},
				{do: "eval tcp 123", reason: "udp only"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := &fakeClock{t: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)}
			p := mustNew(t, rules(t, tt.rules...), Options{Now: clk.now})
			for i, s := range tt.steps {
				f := strings.Fields(s.do)
				switch f[0] {
				case "learn":
					d, _ := time.ParseDuration(f[2])
					p.Learn(f[1], []netip.Addr{ip}, d)
				case "advance":
					d, _ := time.ParseDuration(f[1])
					clk.advance(d)
				case "eval":
					port, _ := strconv.ParseUint(f[2], 10, 16)
					got := p.Evaluate(f[1], dst(uint16(port)))
					if got.Allow != s.allow || (s.allow && got.Rule != s.rule) || (!s.allow && !strings.Contains(got.Reason, s.reason)) {
						t.Fatalf("step %d (%s): got %+v; want allow=%v rule=%q reason~%q", i, s.do, got, s.allow, s.rule, s.reason)
					}
				}
			}
		})
	}
}

func TestLearnNeverOpensSpecialAddresses(t *testing.T) {
	p := mustNew(t, rules(t, "rebind.example.com:80"), Options{})
	for _, a := range []string{"127.0.0.1", "169.254.169.254", "::1", "fe80::1", "0.0.0.0", "224.0.0.1"} {
		addr := netip.MustParseAddr(a)
		if got := p.Learn("rebind.example.com", []netip.Addr{addr}, time.Minute); got != 0 {
			t.Errorf("Learn(%s) kept TTL %v; want 0 (special addresses are never learned)", a, got)
		}
		if v := p.Evaluate("tcp", netip.AddrPortFrom(addr, 80)); v.Allow {
			t.Errorf("Evaluate(%s:80) after rebinding answer = %+v; want deny", a, v)
		}
	}
}

func TestLearnReturnsClampedTTL(t *testing.T) {
	p := mustNew(t, rules(t, "a.example.com:443"), Options{TTLFloor: 5 * time.Second, TTLCeiling: time.Minute})
	ip := []netip.Addr{netip.MustParseAddr("192.0.2.1")}
	for _, tt := range []struct{ in, want time.Duration }{
		{0, 5 * time.Second}, {10 * time.Second, 10 * time.Second}, {time.Hour, time.Minute},
	} {
		if got := p.Learn("a.example.com", ip, tt.in); got != tt.want {
			t.Errorf("Learn(ttl %v) = %v; want %v", tt.in, got, tt.want)
		}
	}
}

func TestNewRejectsBadRules(t *testing.T) {
	tests := []struct {
		name string
		rule spec.EgressRule
		want string
	}{
		{"both", spec.EgressRule{Host: "a.com", CIDR: "10.0.0.0/8", Ports: []spec.PortRange{{Lo: 1, Hi: 1}}}, "rule 1"},
		{"no ports", spec.EgressRule{CIDR: "10.0.0.0/8"}, "ports"},
		{"bad proto", spec.EgressRule{CIDR: "10.0.0.0/8", Proto: "sctp", Ports: []spec.PortRange{{Lo: 1, Hi: 1}}}, "sctp"},
		{"bad port", spec.EgressRule{CIDR: "10.0.0.0/8", Ports: []spec.PortRange{{Lo: 0, Hi: 70000}}}, "port range"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New([]spec.EgressRule{tt.rule}, Options{})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New(%+v) error = %v; want one mentioning %q", tt.rule, err, tt.want)
			}
		})
	}
	if _, err := New(nil, Options{TTLFloor: time.Hour, TTLCeiling: time.Minute}); err == nil {
		t.Errorf("New with floor > ceiling: got nil error")
	}
}

func TestNewDoesNotModifyCallerRules(t *testing.T) {
	in := []spec.EgressRule{{CIDR: "10.0.0.1", Ports: []spec.PortRange{{Lo: 1, Hi: 1}}}}
	mustNew(t, in, Options{})
	if in[0].Proto != "" || in[0].CIDR != "10.0.0.1" {
		t.Errorf("caller's rule changed to %+v", in[0])
	}
}

func TestLearnedTableIsBounded(t *testing.T) {
	clk := &fakeClock{t: time.Unix(0, 0)}
	p := mustNew(t, rules(t, "*.example.com:443"), Options{Now: clk.now})
	addrs := make([]netip.Addr, 0, MaxLearned+10)
	a := netip.MustParseAddr("11.0.0.0")
	for range MaxLearned + 10 {
		a = a.Next()
		addrs = append(addrs, a)
	}
	p.Learn("x.example.com", addrs, time.Minute)
	if v := p.Evaluate("tcp", netip.AddrPortFrom(addrs[len(addrs)-1], 443)); v.Allow {
		t.Errorf("address past the table bound was learned: %+v", v)
	}
	clk.advance(2 * time.Minute)
	if got := p.Learn("y.example.com", addrs[len(addrs)-1:], time.Minute); got == 0 {
		t.Errorf("after expiry the table still refuses new addresses")
	}
}
