package runner

import (
	"bytes"
	"fmt"
	"net"
	"strings"
	"testing"

	"github.com/hullvm/hull/internal/control"
	"github.com/hullvm/hull/internal/spec"
)

// A server bound to the guest's loopback on a forwarded port draws one
// warning saying how to fix it; a server bound to all addresses is a
// ready event, never a warning.
func TestOnListen(t *testing.T) {
	fwd := spec.Port{HostIP: "127.0.0.1", HostPort: 18080, GuestPort: 8080, Proto: "tcp"}
	tests := []struct {
		name      string
		msgs      []control.Msg
		wantWarn  int
		wantReady int
	}{
		{"loopback v4", []control.Msg{{Proto: "tcp", Addr: "127.0.0.1", Port: 8080}}, 1, 0},
		{"loopback v6", []control.Msg{{Proto: "tcp", Addr: "::1", Port: 8080}}, 1, 0},
		{"warn once", []control.Msg{{Proto: "tcp", Addr: "127.0.0.1", Port: 8080}, {Proto: "tcp", Addr: "::1", Port: 8080}}, 1, 0},
		{"all addresses", []control.Msg{{Proto: "tcp", Addr: "0.0.0.0", Port: 8080}}, 0, 1},
		{"guest address", []control.Msg{{Proto: "tcp", Addr: "10.0.2.15", Port: 8080}}, 0, 1},
		{"other port", []control.Msg{{Proto: "tcp", Addr: "127.0.0.1", Port: 9090}}, 0, 0},
		{"other proto", []control.Msg{{Proto: "udp", Addr: "127.0.0.1", Port: 8080}}, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var log bytes.Buffer
			ready := 0
			r := &run{o: Options{Ports: []spec.Port{fwd}, Log: &log, OnEvent: func(e Event) {
				if e.Name == "listening" {
					ready++
				}
			}}}
			for _, m := range tt.msgs {
				r.onListen(m)
			}
			if got := strings.Count(log.String(), "warning:"); got != tt.wantWarn {
				t.Errorf("%d warnings, want %d:\n%s", got, tt.wantWarn, log.String())
			}
			if tt.wantWarn > 0 && !strings.Contains(log.String(), "0.0.0.0:8080") {
				t.Errorf("the warning does not say to listen on 0.0.0.0:8080:\n%s", log.String())
			}
			if ready != tt.wantReady {
				t.Errorf("%d ready events, want %d", ready, tt.wantReady)
			}
		})
	}
}

func TestTailKeepsTheEnd(t *testing.T) {
	tl := newTail(8)
	tl.Write([]byte("0123"))
	tl.Write([]byte("456789ab"))
	if got := tl.String(); got != "456789ab" {
		t.Errorf("tail = %q, want %q", got, "456789ab")
	}
}

func TestCheckHostPortsNamesTheTakenPort(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	taken := l.Addr().(*net.TCPAddr).Port
	err = checkHostPorts([]spec.Port{{HostIP: "127.0.0.1", HostPort: taken, GuestPort: 80, Proto: "tcp"}})
	if err == nil || !strings.Contains(err.Error(), fmt.Sprint(taken)) {
		t.Errorf("checkHostPorts on a taken port = %v, want an error naming port %d", err, taken)
	}
	free := l.Addr().(*net.TCPAddr).Port
	l.Close()
	if err := checkHostPorts([]spec.Port{{HostIP: "127.0.0.1", HostPort: free, GuestPort: 80, Proto: "tcp"}}); err != nil {
		t.Errorf("checkHostPorts on a free port = %v", err)
	}
}
