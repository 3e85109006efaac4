package spec

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Size is a byte count written as 128M, 1G, 512K or plain bytes.
type Size int64

// ParseSize parses a size with an optional K, M, G or T suffix (powers of
// 1024; an optional trailing "i" and/or "B" is accepted: 64MiB, 64MB).
func ParseSize(s string) (Size, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return 0, errors.New("empty size")
	}
	u := strings.ToUpper(t)
	u = strings.TrimSuffix(u, "B")
	u = strings.TrimSuffix(u, "I")
	mult := int64(1)
	if n := len(u); n > 0 {
		switch u[n-1] {
		case 'K':
			mult = 1 << 10
		case 'M':
			mult = 1 << 20
		case 'G':
			mult = 1 << 30
		case 'T':
			mult = 1 << 40
		}
		if mult != 1 {
			u = u[:n-1]
		}
	}
	v, err := strconv.ParseInt(u, 10, 64)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("bad size %q: want a number with an optional K, M, G or T suffix, e.g. 128M", s)
	}
	if v > (1<<62)/mult {
		return 0, fmt.Errorf("size %q is too large", s)
	}
	return Size(v * mult), nil
}

// String prints the size in the largest unit that divides it.
func (s Size) String() string {
	v := int64(s)
	for _, u := range []struct {
		suffix string
		n      int64
	}{{"T", 1 << 40}, {"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}} {
		if v != 0 && v%u.n == 0 {
			return strconv.FormatInt(v/u.n, 10) + u.suffix
		}
	}
	return strconv.FormatInt(v, 10)
}

// UnmarshalYAML accepts "128M" or a plain integer of bytes.
func (s *Size) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: want a size such as 128M", n.Line)
	}
	v, err := ParseSize(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*s = v
	return nil
}

// Set and Type make Size a pflag.Value.
func (s *Size) Set(v string) error {
	p, err := ParseSize(v)
	if err != nil {
		return err
	}
	*s = p
	return nil
}

// Type names the flag value kind in help output.
func (s *Size) Type() string { return "size" }

// Port is one ingress forward: host [HostIP:]HostPort → guest GuestPort.
type Port struct {
	HostIP    string // default 127.0.0.1
	HostPort  int
	GuestPort int
	Proto     string // "tcp" or "udp"
}

// ParsePort parses [hostIP:]hostPort:guestPort[/tcp|/udp], or a lone
// port meaning the same port on both sides. IPv6 host addresses go in
// brackets: [::1]:8080:80.
func ParsePort(s string) (Port, error) {
	p := Port{Proto: "tcp", HostIP: "127.0.0.1"}
	rest := s
	if i := strings.LastIndexByte(rest, '/'); i >= 0 {
		p.Proto = strings.ToLower(rest[i+1:])
		rest = rest[:i]
		if p.Proto != "tcp" && p.Proto != "udp" {
			return Port{}, fmt.Errorf("%q: protocol must be tcp or udp", s)
		}
	}
	if strings.HasPrefix(rest, "[") {
		end := strings.Index(rest, "]:")
		if end < 0 {
			return Port{}, fmt.Errorf("%q: want [IPv6]:hostPort:guestPort", s)
		}
		p.HostIP = rest[1:end]
		rest = rest[end+2:]
		if _, err := netip.ParseAddr(p.HostIP); err != nil {
			return Port{}, fmt.Errorf("%q: bad host address %q", s, p.HostIP)
		}
	}
	parts := strings.Split(rest, ":")
	var hostPort, guestPort string
	switch len(parts) {
	case 1:
		hostPort, guestPort = parts[0], parts[0]
	case 2:
		hostPort, guestPort = parts[0], parts[1]
	case 3:
		if strings.HasPrefix(s, "[") {
			return Port{}, fmt.Errorf("%q: want [hostIP:]hostPort:guestPort[/udp]", s)
		}
		p.HostIP = parts[0]
		if _, err := netip.ParseAddr(p.HostIP); err != nil {
			return Port{}, fmt.Errorf("%q: bad host address %q", s, p.HostIP)
		}
		hostPort, guestPort = parts[1], parts[2]
	default:
		return Port{}, fmt.Errorf("%q: want [hostIP:]hostPort:guestPort[/udp]", s)
	}
	var err error
	if p.HostPort, err = parsePortNum(hostPort); err != nil {
		return Port{}, fmt.Errorf("%q: host port: %w", s, err)
	}
	if p.GuestPort, err = parsePortNum(guestPort); err != nil {
		return Port{}, fmt.Errorf("%q: guest port: %w", s, err)
	}
	return p, nil
}

func parsePortNum(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 65535 {
		return 0, fmt.Errorf("%q is not a port number (1-65535)", s)
	}
	return n, nil
}

// Check validates a Port built by hand (YAML mapping form).
func (p Port) Check() error {
	if p.Proto != "tcp" && p.Proto != "udp" {
		return fmt.Errorf("protocol %q: want tcp or udp", p.Proto)
	}
	if _, err := netip.ParseAddr(p.HostIP); err != nil {
		return fmt.Errorf("bad host address %q", p.HostIP)
	}
	if p.HostPort < 1 || p.HostPort > 65535 || p.GuestPort < 1 || p.GuestPort > 65535 {
		return errors.New("ports must be 1-65535")
	}
	return nil
}

// String renders the canonical form hostIP:hostPort:guestPort/proto.
func (p Port) String() string {
	ip := p.HostIP
	if strings.Contains(ip, ":") {
		ip = "[" + ip + "]"
	}
	return fmt.Sprintf("%s:%d:%d/%s", ip, p.HostPort, p.GuestPort, p.Proto)
}

// UnmarshalYAML accepts the string form "8080:80/tcp" or a bare number.
func (p *Port) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: a port is a string like \"8080:80\" or \"127.0.0.1:5353:53/udp\"", n.Line)
	}
	v, err := ParsePort(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: ports: %w", n.Line, err)
	}
	*p = v
	return nil
}

// EgressRule allows traffic to a DNS name or an address range on ports.
// Exactly one of Host and CIDR is set.
type EgressRule struct {
	Host  string      `yaml:"host"`
	CIDR  string      `yaml:"cidr"`
	Ports []PortRange `yaml:"ports"`
	Proto string      `yaml:"proto"` // tcp (default) or udp
}

// PortRange is an inclusive range of ports; a single port has Lo == Hi.
type PortRange struct{ Lo, Hi int }

// String renders 443 or 8000-8100.
func (r PortRange) String() string {
	if r.Lo == r.Hi {
		return strconv.Itoa(r.Lo)
	}
	return fmt.Sprintf("%d-%d", r.Lo, r.Hi)
}

// ParsePortRange parses "443" or "8000-8100".
func ParsePortRange(s string) (PortRange, error) {
	lo, hi, isRange := strings.Cut(s, "-")
	a, err := parsePortNum(strings.TrimSpace(lo))
	if err != nil {
		return PortRange{}, err
	}
	b := a
	if isRange {
		if b, err = parsePortNum(strings.TrimSpace(hi)); err != nil {
			return PortRange{}, err
		}
		if b < a {
			return PortRange{}, fmt.Errorf("range %q runs backwards", s)
		}
	}
	return PortRange{a, b}, nil
}

// UnmarshalYAML accepts 443, "443" or "8000-8100".
func (r *PortRange) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: a port is a number or a range like 8000-8100", n.Line)
	}
	v, err := ParsePortRange(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*r = v
	return nil
}

// UnmarshalYAML decodes a rule strictly (unknown keys are errors).
func (r *EgressRule) UnmarshalYAML(n *yaml.Node) error {
	return decodeStrictMapping(n, "egress rule", map[string]any{
		"host": &r.Host, "cidr": &r.CIDR, "ports": &r.Ports, "proto": &r.Proto,
	})
}

// Check validates the rule and fills the default protocol.
func (r *EgressRule) Check() error {
	if r.Proto == "" {
		r.Proto = "tcp"
	}
	r.Proto = strings.ToLower(r.Proto)
	if r.Proto != "tcp" && r.Proto != "udp" {
		return fmt.Errorf("proto %q: want tcp or udp", r.Proto)
	}
	switch {
	case r.Host != "" && r.CIDR != "":
		return errors.New("give either host or cidr, not both")
	case r.Host == "" && r.CIDR == "":
		return errors.New("give host (a DNS name) or cidr (an address range)")
	case r.Host != "":
		if err := checkDNSName(r.Host); err != nil {
			return err
		}
	default:
		pfx, err := netip.ParsePrefix(r.CIDR)
		if err != nil {
			a, aerr := netip.ParseAddr(r.CIDR)
			if aerr != nil {
				return fmt.Errorf("cidr %q is not an address range like 10.0.0.0/8", r.CIDR)
			}
			pfx = netip.PrefixFrom(a, a.BitLen())
		}
		if pfx.Masked() != pfx {
			return fmt.Errorf("cidr %q has host bits set; did you mean %s?", r.CIDR, pfx.Masked())
		}
		r.CIDR = pfx.String()
	}
	if len(r.Ports) == 0 {
		return errors.New("ports: list the ports this rule allows (e.g. ports: [443])")
	}
	return nil
}

// String renders the rule as the --allow flag form.
func (r EgressRule) String() string {
	dst := r.Host
	if dst == "" {
		dst = r.CIDR
	}
	ports := make([]string, len(r.Ports))
	for i, p := range r.Ports {
		ports[i] = p.String()
	}
	proto := r.Proto
	if proto == "" {
		proto = "tcp"
	}
	return fmt.Sprintf("%s:%s/%s", dst, strings.Join(ports, ","), proto)
}

// ParseAllow parses the --allow flag: DEST:PORTS[/proto] where DEST is a
// DNS name, an address or a CIDR (IPv6 in brackets), PORTS a comma list
// of ports or ranges.
func ParseAllow(s string) (EgressRule, error) {
	var r EgressRule
	rest := s
	if i := strings.LastIndexByte(rest, '/'); i >= 0 {
		if proto := strings.ToLower(rest[i+1:]); proto == "tcp" || proto == "udp" {
			r.Proto = proto
			rest = rest[:i]
		}
	}
	var dst, ports string
	if strings.HasPrefix(rest, "[") {
		end := strings.Index(rest, "]:")
		if end < 0 {
			return r, fmt.Errorf("--allow %q: want [IPv6/len]:PORTS", s)
		}
		dst, ports = rest[1:end], rest[end+2:]
	} else {
		i := strings.LastIndexByte(rest, ':')
		if i < 0 {
			return r, fmt.Errorf("--allow %q: want DEST:PORTS[/tcp|/udp], e.g. api.example.com:443", s)
		}
		dst, ports = rest[:i], rest[i+1:]
	}
	for _, ps := range strings.Split(ports, ",") {
		pr, err := ParsePortRange(ps)
		if err != nil {
			return r, fmt.Errorf("--allow %q: %w", s, err)
		}
		r.Ports = append(r.Ports, pr)
	}
	if _, err := netip.ParsePrefix(dst); err == nil {
		r.CIDR = dst
	} else if _, err := netip.ParseAddr(dst); err == nil {
		r.CIDR = dst
	} else {
		r.Host = dst
	}
	if err := r.Check(); err != nil {
		return r, fmt.Errorf("--allow %q: %w", s, err)
	}
	return r, nil
}

func checkDNSName(h string) error {
	name := strings.TrimSuffix(strings.ToLower(h), ".")
	if len(name) == 0 || len(name) > 253 {
		return fmt.Errorf("host %q is not a DNS name", h)
	}
	for _, label := range strings.Split(name, ".") {
		if !hostnameRE.MatchString(label) && !(label == "*" && strings.HasPrefix(name, "*.")) {
			return fmt.Errorf("host %q is not a DNS name (bad label %q)", h, label)
		}
	}
	return nil
}

// ParseHostPort parses host:port (port defaulting to def when absent).
func ParseHostPort(s string, def int) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap, nil
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.AddrPortFrom(a, uint16(def)), nil
	}
	return netip.AddrPort{}, fmt.Errorf("want IP:PORT, e.g. 127.0.0.1:53")
}
