package netgw

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hullvm/hull/internal/policy"
	"github.com/hullvm/hull/internal/spec"
	"github.com/miekg/dns"
)

func mustPolicy(t testing.TB, allows ...string) *policy.Policy {
	t.Helper()
	var rules []spec.EgressRule
	for _, a := range allows {
		r, err := spec.ParseAllow(a)
		if err != nil {
			t.Fatal(err)
		}
		rules = append(rules, r)
	}
	p, err := policy.New(rules, policy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// testUpstream is a DNS server on host loopback (UDP and TCP on one port)
// that answers from a fixed zone and counts the questions it got.
type testUpstream struct {
	addr netip.AddrPort
	mu   sync.Mutex
	asks map[string]int
}

func startUpstream(t testing.TB, zone map[string][]string) *testUpstream {
	t.Helper()
	u := &testUpstream{asks: map[string]int{}}
	handler := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		q := r.Question[0]
		name := strings.ToLower(q.Name)
		u.mu.Lock()
		u.asks[strings.TrimSuffix(name, ".")]++
		u.mu.Unlock()
		recs, ok := zone[strings.TrimSuffix(name, ".")]
		if !ok {
			m.Rcode = dns.RcodeNameError
		}
		for _, rec := range recs {
			rr, err := dns.NewRR(rec)
			if err != nil {
				panic(err)
			}
			if rr.Header().Rrtype == q.Qtype || rr.Header().Rrtype == dns.TypeCNAME || q.Qtype == dns.TypeANY {
				m.Answer = append(m.Answer, rr)
			}
		}
		if w.LocalAddr().Network() == "udp" {
			size := dns.MinMsgSize
			if o := r.IsEdns0(); o != nil {
				size = int(o.UDPSize())
			}
			m.Truncate(size)
		}
		w.WriteMsg(m)
	})
	var pc net.PacketConn
	var ln net.Listener
	for range 20 {
		var err error
		pc, err = net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		if ln, err = net.Listen("tcp", pc.LocalAddr().String()); err == nil {
			break
		}
		pc.Close()
	}
	if ln == nil {
		t.Fatal("no port free for both UDP and TCP")
	}
	u.addr = netip.MustParseAddrPort(pc.LocalAddr().String())
	us := &dns.Server{PacketConn: pc, Handler: handler}
	ts := &dns.Server{Listener: ln, Handler: handler}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); us.ActivateAndServe() }()
	go func() { defer wg.Done(); ts.ActivateAndServe() }()
	t.Cleanup(func() { us.Shutdown(); ts.Shutdown(); wg.Wait() })
	return u
}

func (u *testUpstream) asked(name string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.asks[name]
}

func testZone() map[string][]string {
	z := map[string][]string{
		"allowed.test":        {"allowed.test. 300 IN A 127.0.0.1", "allowed.test. 300 IN AAAA ::1"},
		"blocked.test":        {"blocked.test. 300 IN A 127.0.0.1"},
		"remote.test":         {"remote.test. 300 IN A 192.0.2.10"},
		"notremote.test":      {"notremote.test. 300 IN A 192.0.2.20"},
		"alias.remote.test":   {"alias.remote.test. 600 IN CNAME edge.cdn.test.", "edge.cdn.test. 20 IN A 192.0.2.11", "evil.test. 300 IN A 192.0.2.66"},
		"longttl.remote.test": {"longttl.remote.test. 604800 IN A 192.0.2.12"},
	}
	for i := range 60 {
		z["many.test"] = append(z["many.test"], fmt.Sprintf("many.test. 300 IN A 192.0.2.%d", 100+i))
	}
	return z
}

func answerAddrs(m *dns.Msg) []string {
	var out []string
	for _, rr := range m.Answer {
		switch v := rr.(type) {
		case *dns.A:
			out = append(out, v.A.String())
		case *dns.AAAA:
			out = append(out, v.AAAA.String())
		}
	}
	return out
}

func TestDNS(t *testing.T) {
	up := startUpstream(t, testZone())
	web := newCountingServer(t, "web")
	remoteAddr := "192.0.2.10:80"
	env := startEnv(t, envOpts{
		upstream: up.addr,
		allow: []string{
			fmt.Sprintf("allowed.test:%d", web.port()),
			fmt.Sprintf("127.0.0.1/32:%d", web.port()),
			"remote.test:80",
			"*.remote.test:80",
			"many.test:80",
		},
		// The fake remote hosts 192.0.2.x are served by web on loopback.
		remap: map[string]string{remoteAddr: web.Listener.Addr().String(), "192.0.2.11:80": web.Listener.Addr().String()},
	})
	g := env.guest
	client := g.httpClient()

	get := func(url string) error {
		resp, err := client.Get(url)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		io.Copy(io.Discard, resp.Body)
		if resp.StatusCode != 200 {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	}

	t.Run("allowed name resolves to the loopback alias and is dialable", func(t *testing.T) {
		for _, proto := range []string{"udp", "tcp"} {
			m, err := g.query(t, proto, "allowed.test", dns.TypeA)
			if err != nil {
				t.Fatalf("%s query: %v", proto, err)
			}
			if m.Rcode != dns.RcodeSuccess || fmt.Sprint(answerAddrs(m)) != "[10.0.2.2]" {
				t.Fatalf("%s allowed.test A = %s %v; want NOERROR [10.0.2.2] (host loopback is reached through the alias)", proto, dns.RcodeToString[m.Rcode], answerAddrs(m))
			}
		}
		m, err := g.query(t, "udp", "allowed.test", dns.TypeAAAA)
		if err != nil || len(m.Answer) != 0 {
			t.Fatalf("allowed.test AAAA = %v, %v; want no ::1 record (the guest link has no IPv6)", m, err)
		}
		if err := get(fmt.Sprintf("http://10.0.2.2:%d/", web.port())); err != nil {
			t.Fatalf("GET allowed.test's address: %v", err)
		}
	})

	t.Run("blocked name refused", func(t *testing.T) {
		before := up.asked("blocked.test")
		for _, proto := range []string{"udp", "tcp"} {
			m, err := g.query(t, proto, "blocked.test", dns.TypeA)
			if err != nil {
				t.Fatalf("%s query: %v", proto, err)
			}
			if m.Rcode != dns.RcodeRefused || len(m.Answer) != 0 {
				t.Errorf("%s blocked.test = %s %v; want REFUSED and no answer", proto, dns.RcodeToString[m.Rcode], answerAddrs(m))
			}
		}
		if n := up.asked("blocked.test") - before; n != 0 {
			t.Errorf("upstream was asked for blocked.test %d times; want 0", n)
		}
	})

	t.Run("host rule makes resolved address dialable on its port only", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		start := time.Now()
		_, err := g.dial(ctx, remoteAddr)
		requireRefused(t, err, time.Since(start)) // not resolved yet: no rule
		m, err := g.query(t, "udp", "remote.test", dns.TypeA)
		if err != nil || fmt.Sprint(answerAddrs(m)) != "[192.0.2.10]" {
			t.Fatalf("remote.test = %v, %v; want [192.0.2.10]", m, err)
		}
		if err := get("http://" + remoteAddr + "/"); err != nil {
			t.Fatalf("GET resolved address: %v", err)
		}
		start = time.Now()
		_, err = g.dial(ctx, "192.0.2.10:81")
		requireRefused(t, err, time.Since(start))
	})

	t.Run("address of an unresolvable name is not dialable", func(t *testing.T) {
		if m, _ := g.query(t, "udp", "notremote.test", dns.TypeA); m == nil || m.Rcode != dns.RcodeRefused {
			t.Fatalf("notremote.test: %v; want REFUSED", m)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		start := time.Now()
		_, err := g.dial(ctx, "192.0.2.20:80")
		requireRefused(t, err, time.Since(start))
		for _, d := range env.dials() {
			if strings.Contains(d, "192.0.2.20") {
				t.Errorf("gateway dialled %s", d)
			}
		}
	})

	t.Run("cname chain followed, stray records dropped, ttl capped", func(t *testing.T) {
		m, err := g.query(t, "udp", "alias.remote.test", dns.TypeA)
		if err != nil {
			t.Fatal(err)
		}
		if got := fmt.Sprint(answerAddrs(m)); got != "[192.0.2.11]" {
			t.Errorf("alias.remote.test = %s; want [192.0.2.11] (evil.test's record dropped)", got)
		}
		if err := get("http://192.0.2.11:80/"); err != nil {
			t.Errorf("GET CNAME target address: %v", err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		start := time.Now()
		_, err = g.dial(ctx, "192.0.2.66:80")
		requireRefused(t, err, time.Since(start))

		m, err = g.query(t, "udp", "longttl.remote.test", dns.TypeA)
		if err != nil || len(m.Answer) != 1 {
			t.Fatalf("longttl.remote.test: %v, %v", m, err)
		}
		if ttl := m.Answer[0].Header().Ttl; ttl != 3600 {
			t.Errorf("TTL handed to the guest = %d; want it capped at 3600", ttl)
		}
	})

	t.Run("local names answered without upstream", func(t *testing.T) {
		for _, tt := range []struct{ name, want string }{
			{"localhost", "[127.0.0.1]"},
			{"app", "[10.0.2.15]"},
			{"host.hull.internal", "[10.0.2.2]"},
			{"HOST.hull.Internal.", "[10.0.2.2]"},
		} {
			m, err := g.query(t, "udp", tt.name, dns.TypeA)
			if err != nil || m.Rcode != dns.RcodeSuccess || fmt.Sprint(answerAddrs(m)) != tt.want {
				t.Errorf("%s = %v, %v; want %s", tt.name, m, err, tt.want)
			}
			if n := up.asked(policy.NormalizeName(tt.name)); n != 0 {
				t.Errorf("upstream asked for %s", tt.name)
			}
		}
	})

	t.Run("large answer truncated over udp, whole over tcp", func(t *testing.T) {
		m, err := g.query(t, "udp", "many.test", dns.TypeA)
		if err != nil {
			t.Fatal(err)
		}
		if !m.Truncated {
			t.Errorf("60 A records over UDP without EDNS: TC not set")
		}
		m, err = g.query(t, "tcp", "many.test", dns.TypeA)
		if err != nil || len(m.Answer) != 60 {
			t.Errorf("over TCP got %d records, %v; want 60", len(m.Answer), err)
		}
	})
}

func TestDNSUpstreamFromResolvConf(t *testing.T) {
	tests := []struct {
		content string
		want    string
		wantErr bool
	}{
		{"# comment\nsearch example.com\nnameserver 192.0.2.53\nnameserver 192.0.2.54\n", "192.0.2.53:53", false},
		{"nameserver fe80::1%eth0\n", "[fe80::1%eth0]:53", false},
		{"nameserver bogus\nnameserver ::1\n", "[::1]:53", false},
		{"search x\n", "", true},
	}
	for i, tt := range tests {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			path := t.TempDir() + "/resolv.conf"
			if err := os.WriteFile(path, []byte(tt.content), 0o644); err != nil {
				t.Fatal(err)
			}
			got, err := upstreamFromResolvConf(path)
			if (err != nil) != tt.wantErr || (err == nil && got.String() != tt.want) {
				t.Errorf("upstreamFromResolvConf(%q) = %v, %v; want %s (error %v)", tt.content, got, err, tt.want, tt.wantErr)
			}
		})
	}
}
