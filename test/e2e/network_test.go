package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

type netResult struct {
	Action string   `json:"action"`
	Target string   `json:"target"`
	OK     bool     `json:"ok"`
	Status int      `json:"status"`
	Body   string   `json:"body"`
	Addrs  []string `json:"addrs"`
	Errno  string   `json:"errno"`
	Error  string   `json:"error"`
}

// serveHTTP starts a server on host loopback that answers with body.
func serveHTTP(t *testing.T, body string) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, body) })}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return l.Addr().(*net.TCPAddr).Port
}

// serveDNS answers A queries for the given names with 127.0.0.1 and
// NXDOMAIN for anything else, counting the questions it was asked.
func serveDNS(t *testing.T, names ...string) (string, *syncBuffer) {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	asked := &syncBuffer{}
	known := map[string]bool{}
	for _, n := range names {
		known[dns.Fqdn(n)] = true
	}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(q)
		for _, qq := range q.Question {
			fmt.Fprintln(asked, qq.Name)
			if known[qq.Name] && qq.Qtype == dns.TypeA {
				rr, _ := dns.NewRR(qq.Name + " 60 IN A 127.0.0.1")
				m.Answer = append(m.Answer, rr)
			} else if !known[qq.Name] {
				m.Rcode = dns.RcodeNameError
			}
		}
		w.WriteMsg(m)
	})}
	go srv.ActivateAndServe()
	t.Cleanup(func() { srv.Shutdown() })
	return pc.LocalAddr().String(), asked
}

// Egress is impossible without a rule, possible with one, and every flow
// is logged (issue 4): the guest reaches the host's loopback only through
// the alias and only on declared ports, DNS answers only allowed names,
// metadata and undeclared UDP go nowhere.
func TestEgressPolicyInGuest(t *testing.T) {
	requireVM(t)
	t.Parallel()
	vmSlot(t)
	allowed := serveHTTP(t, "allowed-server")
	undeclared := serveHTTP(t, "must-not-be-reached")
	udp, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	udpPort := udp.LocalAddr().(*net.UDPAddr).Port
	dnsAddr, asked := serveDNS(t, "allowed.test", "blocked.test")
	flowLog := filepath.Join(t.TempDir(), "flows.jsonl")

	bin := goBuild(t, "./test/e2e/testdata/nettest", false)
	actions := []string{
		"get", fmt.Sprintf("http://10.0.2.2:%d/", allowed),
		"get", fmt.Sprintf("http://host.hull.internal:%d/", allowed),
		"dial", fmt.Sprintf("10.0.2.2:%d", undeclared),
		"dial", "169.254.169.254:80",
		"resolve", "allowed.test",
		"get", fmt.Sprintf("http://allowed.test:%d/", allowed),
		"resolve", "blocked.test",
		"dial", "192.0.2.1:443",
		"udp", fmt.Sprintf("10.0.2.2:%d", udpPort),
	}
	r := hull(t, append([]string{"run", bin,
		"--allow", fmt.Sprintf("127.0.0.1/32:%d", allowed),
		"--allow", fmt.Sprintf("allowed.test:%d", allowed),
		"--dns-upstream", dnsAddr, "--flow-log", flowLog, "--"}, actions...)...)
	if r.code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", r.code, r.stderr)
	}
	var got []netResult
	sc := bufio.NewScanner(strings.NewReader(r.stdout))
	for sc.Scan() {
		var n netResult
		if err := json.Unmarshal(sc.Bytes(), &n); err == nil {
			got = append(got, n)
		}
	}
	if len(got) != len(actions)/2 {
		t.Fatalf("%d results, want %d; stdout:\n%s\nstderr:\n%s", len(got), len(actions)/2, r.stdout, r.stderr)
	}
	check := func(i int, what string, ok bool, detail string) {
		t.Helper()
		if !ok {
			t.Errorf("%s (%s %s): got %+v %s", what, got[i].Action, got[i].Target, got[i], detail)
		}
	}
	check(0, "declared loopback port through the alias serves", got[0].Status == 200 && got[0].Body == "allowed-server", "")
	check(1, "the alias name resolves locally and serves", got[1].Status == 200, "")
	check(2, "undeclared port is refused at once, not timed out", got[2].Errno == "ECONNREFUSED", "")
	check(3, "metadata address is refused", got[3].Errno == "ECONNREFUSED", "")
	check(4, "allowed name resolves (to the alias)", strings.Join(got[4].Addrs, ",") == "10.0.2.2", "")
	check(5, "allowed name is dialable on its port", got[5].Status == 200, "")
	check(6, "blocked name does not resolve", !got[6].OK, "")
	check(7, "an address no rule names is refused", got[7].Errno == "ECONNREFUSED", "")
	check(8, "undeclared UDP is dropped", !got[8].OK && got[8].Errno == "TIMEOUT", "")
	if strings.Contains(asked.String(), "blocked.test") {
		t.Errorf("the gateway asked the upstream about blocked.test; it must refuse without asking:\n%s", asked.String())
	}
	for _, want := range []string{"hull: denied: egress deny tcp 169.254.169.254:80", "dns blocked.test", fmt.Sprintf("udp 127.0.0.1:%d", udpPort)} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
		}
	}
	log, err := os.ReadFile(flowLog)
	if err != nil {
		t.Fatal(err)
	}
	verdicts := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(string(log)), "\n") {
		var f struct {
			Verdict string `json:"verdict"`
			Remote  string `json:"remote"`
		}
		if err := json.Unmarshal([]byte(line), &f); err != nil {
			t.Fatalf("flow log line %q: %v", line, err)
		}
		verdicts[f.Verdict+" "+f.Remote]++
	}
	for _, want := range []string{fmt.Sprintf("allow 127.0.0.1:%d", allowed), "deny 169.254.169.254:80", "deny 192.0.2.1:443"} {
		if verdicts[want] == 0 {
			t.Errorf("flow log has no %q entry: %v", want, verdicts)
		}
	}
}
