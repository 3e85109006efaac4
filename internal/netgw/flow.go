package netgw

import (
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"time"
)

// Flow directions and verdicts as they appear in the flow log.
const (
	Egress  = "egress"
	Ingress = "ingress"
	Allow   = "allow"
	Deny    = "deny"
)

// Flow is one connection, UDP association, DNS query or denied attempt.
// Allowed flows are recorded when they end, denied ones at once.
type Flow struct {
	Time      time.Time // when the flow started
	Direction string    // Egress or Ingress
	Proto     string    // "tcp", "udp" or "icmp"
	Guest     netip.AddrPort
	// Remote is the real peer: for egress the destination dialled on the
	// host (127.0.0.1:P for the loopback alias), for ingress the client
	// that connected to the host listener.
	Remote   netip.AddrPort
	Name     string // DNS name, when known
	DNS      bool   // a query to the gateway's resolver for Name
	Verdict  string // Allow or Deny
	Rule     string // the rule or forward that allowed it
	Reason   string // why it was denied
	Error    string // an allowed flow that failed (host dial refused, ...)
	BytesOut int64  // bytes the guest sent
	BytesIn  int64  // bytes the guest received
	Duration time.Duration
}

type flowJSON struct {
	Time       string  `json:"time"`
	Direction  string  `json:"direction"`
	Proto      string  `json:"proto"`
	Guest      string  `json:"guest"`
	Remote     string  `json:"remote"`
	Name       string  `json:"name,omitempty"`
	DNS        bool    `json:"dns,omitempty"`
	Verdict    string  `json:"verdict"`
	Rule       string  `json:"rule,omitempty"`
	Reason     string  `json:"reason,omitempty"`
	Error      string  `json:"error,omitempty"`
	BytesOut   int64   `json:"bytes_out"`
	BytesIn    int64   `json:"bytes_in"`
	DurationMS float64 `json:"duration_ms"`
}

// MarshalJSON renders the flow-log form: addresses as "ip:port", time in
// RFC 3339 with nanoseconds (UTC), duration in milliseconds.
func (f Flow) MarshalJSON() ([]byte, error) {
	ap := func(a netip.AddrPort) string {
		if !a.IsValid() {
			return ""
		}
		return a.String()
	}
	return json.Marshal(flowJSON{
		Time: f.Time.UTC().Format(time.RFC3339Nano), Direction: f.Direction, Proto: f.Proto,
		Guest: ap(f.Guest), Remote: ap(f.Remote), Name: f.Name, DNS: f.DNS, Verdict: f.Verdict,
		Rule: f.Rule, Reason: f.Reason, Error: f.Error, BytesOut: f.BytesOut, BytesIn: f.BytesIn,
		DurationMS: float64(f.Duration.Microseconds()) / 1000,
	})
}

// Target is the short form of the flow's destination used in summaries
// and warnings: "tcp 169.254.169.254:80", "dns blocked.test".
func (f Flow) Target() string {
	switch {
	case f.DNS:
		return "dns " + f.Name
	case f.Proto == "icmp":
		return "icmp " + f.Remote.Addr().String()
	}
	t := f.Proto + " " + f.Remote.String()
	if f.Name != "" {
		t += " (" + f.Name + ")"
	}
	return t
}

// String is a one-line human form, for warnings.
func (f Flow) String() string {
	s := fmt.Sprintf("%s %s %s", f.Direction, f.Verdict, f.Target())
	if f.Reason != "" {
		s += ": " + f.Reason
	}
	if f.Error != "" {
		s += ": " + f.Error
	}
	return s
}

// Summary counts flows since Start: egress (the policy's business) and
// ingress (connections through -p forwards) apart, and flows that were
// let through but failed apart from those that worked.
type Summary struct {
	Allowed, Denied int // egress flows and DNS queries
	// Failed are allowed egress flows whose dial failed (host refused, no
	// route); they are also in Allowed.
	Failed int
	// Ingress counts connections and UDP associations through forwards;
	// IngressFailed those the guest did not accept (nothing listening yet,
	// or bound to its own loopback).
	Ingress, IngressFailed int
	// DeniedTo lists each denied target with its count, most frequent
	// first, then by name.
	DeniedTo []DeniedTarget
}

// Any reports whether there was any flow at all.
func (s Summary) Any() bool { return s.Allowed+s.Denied+s.Ingress > 0 }

// DeniedTarget is a denied destination and how often it was tried.
type DeniedTarget struct {
	Target string
	Count  int
}

// String renders "egress: 3 allowed (1 failed), 2 denied: tcp
// 169.254.169.254:80, dns blocked.test (×2); ingress: 6 connections (5 not
// accepted by the guest)".
func (s Summary) String() string {
	out := fmt.Sprintf("egress: %d allowed", s.Allowed)
	if s.Failed > 0 {
		out += fmt.Sprintf(" (%d failed)", s.Failed)
	}
	out += fmt.Sprintf(", %d denied", s.Denied)
	if len(s.DeniedTo) > 0 {
		parts := make([]string, 0, len(s.DeniedTo))
		for _, d := range s.DeniedTo {
			if d.Count > 1 {
				parts = append(parts, fmt.Sprintf("%s (×%d)", d.Target, d.Count))
			} else {
				parts = append(parts, d.Target)
			}
		}
		out += ": " + strings.Join(parts, ", ")
	}
	if s.Ingress > 0 {
		out += fmt.Sprintf("; ingress: %d %s", s.Ingress, plural(s.Ingress, "connection", "connections"))
		if s.IngressFailed > 0 {
			out += fmt.Sprintf(" (%d not accepted by the guest)", s.IngressFailed)
		}
	}
	return out
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// recorder writes the flow log and keeps the summary.
type recorder struct {
	mu     sync.Mutex
	w      io.Writer
	onDeny func(Flow)
	sum    Summary // counts only; DeniedTo is built from denied
	denied map[string]int
}

func newRecorder(w io.Writer, onDeny func(Flow)) *recorder {
	return &recorder{w: w, onDeny: onDeny, denied: map[string]int{}}
}

func (r *recorder) record(f Flow) {
	line, err := json.Marshal(f)
	if err == nil {
		line = append(line, '\n')
	}
	r.mu.Lock()
	switch {
	case f.Direction == Ingress:
		r.sum.Ingress++
		if f.Error != "" {
			r.sum.IngressFailed++
		}
	case f.Verdict == Deny:
		r.sum.Denied++
		r.denied[f.Target()]++
	default:
		r.sum.Allowed++
		if f.Error != "" {
			r.sum.Failed++
		}
	}
	if r.w != nil && err == nil {
		r.w.Write(line) // a failing log must not stop the network
	}
	r.mu.Unlock()
	if f.Verdict == Deny && r.onDeny != nil {
		r.onDeny(f)
	}
}

func (r *recorder) summary() Summary {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.sum
	s.DeniedTo = nil
	for t, n := range r.denied {
		s.DeniedTo = append(s.DeniedTo, DeniedTarget{Target: t, Count: n})
	}
	sort.Slice(s.DeniedTo, func(i, j int) bool {
		a, b := s.DeniedTo[i], s.DeniedTo[j]
		if a.Count != b.Count {
			return a.Count > b.Count
		}
		return a.Target < b.Target
	})
	return s
}
