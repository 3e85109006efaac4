package control_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/hullvm/hull/internal/control"
)

// pipe returns two connected Conns, closed at the end of the test.
func pipe(t *testing.T) (*control.Conn, *control.Conn, net.Conn, net.Conn) {
	t.Helper()
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	return control.NewConn(a), control.NewConn(b), a, b
}

// rw joins a reader and a writer into one stream.
type rw struct {
	io.Reader
	io.Writer
}

// chunkyWriter writes one byte per Write and yields in between, so that
// unsynchronised concurrent senders would interleave their lines.
type chunkyWriter struct{ w io.Writer }

func (c chunkyWriter) Write(p []byte) (int, error) {
	for i := range p {
		if _, err := c.w.Write(p[i : i+1]); err != nil {
			return i, err
		}
		runtime.Gosched()
	}
	return len(p), nil
}

func TestRoundTrip(t *testing.T) {
	host, guest, _, _ := pipe(t)
	msgs := []control.Msg{
		{Type: control.TypeHello, Uptime: 0.125},
		{Type: control.TypeStage, Stage: "network", Uptime: 0.5},
		{Type: control.TypeStarted, PID: 2},
		{Type: control.TypeListen, Proto: "tcp", Addr: "0.0.0.0", Port: 8080},
		{Type: control.TypeDenied, Syscall: "execve", Text: "starting another program is not allowed"},
		{Type: control.TypeWarn, Text: "line one\nline two \"quoted\" ünïcode ☃"},
		{Type: control.TypeExit, Code: 3, Signal: 9},
		{Type: control.TypeConfig, Env: []string{"SECRET=a=b c", "EMPTY="}, Args: []string{}, ArgsSet: true, Ports: []int{80, 443}},
		{Type: control.TypeStop, Signal: 15},
	}
	errc := make(chan error, 1)
	go func() {
		for _, m := range msgs {
			if err := guest.Send(m); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	for i, want := range msgs {
		got, err := host.Recv()
		if err != nil {
			t.Fatalf("Recv #%d: %v", i, err)
		}
		// An empty, non-nil slice is omitted on the wire and comes back nil.
		if want.Args != nil && len(want.Args) == 0 {
			want.Args = nil
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("Recv #%d = %+v, want %+v", i, got, want)
		}
	}
	if err := <-errc; err != nil {
		t.Fatalf("Send: %v", err)
	}
}

// TestWireFormat pins the JSON both sides speak: the guest init and the
// runner are different binaries, possibly of different builds.
func TestWireFormat(t *testing.T) {
	tests := []struct {
		msg  control.Msg
		want string
	}{
		{control.Msg{Type: control.TypeExit}, `{"t":"exit"}`},
		{control.Msg{Type: control.TypeExit, Code: 1, Signal: 9}, `{"t":"exit","code":1,"sig":9}`},
		{control.Msg{Type: control.TypeHello, Uptime: 1.5}, `{"t":"hello","up":1.5}`},
		{control.Msg{Type: control.TypeDenied, Syscall: "fork", Text: "no"}, `{"t":"denied","text":"no","syscall":"fork"}`},
		{control.Msg{Type: control.TypeConfig, Env: []string{"A=1"}, Args: []string{"x"}, ArgsSet: true, Ports: []int{80}},
			`{"t":"config","env":["A=1"],"args":["x"],"args_set":true,"ports":[80]}`},
		{control.Msg{Type: control.TypeWarn, Text: "a\nb"}, `{"t":"warn","text":"a\nb"}`},
	}
	for _, tt := range tests {
		t.Run(tt.msg.Type, func(t *testing.T) {
			var buf bytes.Buffer
			c := control.NewConn(rw{Reader: strings.NewReader(""), Writer: &buf})
			if err := c.Send(tt.msg); err != nil {
				t.Fatalf("Send: %v", err)
			}
			if got := buf.String(); got != tt.want+"\n" {
				t.Errorf("Send wrote %q, want %q", got, tt.want+"\n")
			}
		})
	}
}

func TestConcurrentSend(t *testing.T) {
	const senders, each = 8, 40
	pr, pw := io.Pipe()
	t.Cleanup(func() { pr.Close(); pw.Close() })
	out := control.NewConn(rw{Reader: strings.NewReader(""), Writer: chunkyWriter{pw}})
	in := control.NewConn(rw{Reader: pr, Writer: io.Discard})

	var wg sync.WaitGroup
	errs := make(chan error, senders)
	for s := 1; s <= senders; s++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				if err := out.Send(control.Msg{Type: control.TypeLog, PID: s, Code: i, Text: strings.Repeat("x", 50)}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	go func() { wg.Wait(); pw.Close(); close(errs) }()

	next := map[int]int{} // sender → next expected sequence number
	for n := 0; n < senders*each; n++ {
		m, err := in.Recv()
		if err != nil {
			t.Fatalf("Recv #%d: %v (lines from concurrent senders interleaved?)", n, err)
		}
		if m.Code != next[m.PID] {
			t.Errorf("sender %d: message %d arrived, want %d (per-sender order)", m.PID, m.Code, next[m.PID])
		}
		next[m.PID] = m.Code + 1
	}
	if _, err := in.Recv(); !errors.Is(err, io.EOF) {
		t.Errorf("Recv after all messages = %v, want io.EOF", err)
	}
	for err := range errs {
		t.Errorf("Send: %v", err)
	}
	for s := 1; s <= senders; s++ {
		if next[s] != each {
			t.Errorf("sender %d: %d messages arrived, want %d", s, next[s], each)
		}
	}
}

// feed writes raw bytes into one end of a pipe from a goroutine and
// returns a Conn reading the other end.
func feed(t *testing.T, data ...string) *control.Conn {
	t.Helper()
	_, _, a, b := pipe(t)
	go func() {
		for _, d := range data {
			if _, err := io.WriteString(a, d); err != nil {
				return // the test finished reading and closed the pipe
			}
		}
		a.Close()
	}()
	return control.NewConn(b)
}

func TestRecvLineLimit(t *testing.T) {
	t.Run("over the limit", func(t *testing.T) {
		c := feed(t, strings.Repeat("a", control.MaxLine+1), "\n")
		_, err := c.Recv()
		if err == nil || !strings.Contains(err.Error(), fmt.Sprint(control.MaxLine)) {
			t.Errorf("Recv of a %d-byte line = %v, want an error naming the limit", control.MaxLine+1, err)
		}
	})
	t.Run("just under the limit", func(t *testing.T) {
		text := strings.Repeat("a", control.MaxLine-100)
		c := feed(t, `{"t":"log","text":"`+text+`"}`+"\n")
		m, err := c.Recv()
		if err != nil || m.Text != text {
			t.Errorf("Recv of a line under MaxLine = text of %d bytes, %v; want %d bytes, nil", len(m.Text), err, len(text))
		}
	})
}

func TestRecvErrors(t *testing.T) {
	t.Run("garbage then a good line", func(t *testing.T) {
		c := feed(t, "this is not json\n", `{"t":"exit","code":7}`+"\n")
		if _, err := c.Recv(); err == nil || errors.Is(err, io.EOF) {
			t.Errorf("Recv(garbage) = %v, want a decoding error", err)
		}
		m, err := c.Recv()
		if err != nil || m.Type != control.TypeExit || m.Code != 7 {
			t.Errorf("Recv after garbage = %+v, %v; want the next line's exit 7", m, err)
		}
	})
	t.Run("wrong field type", func(t *testing.T) {
		c := feed(t, `{"t":"exit","code":"seven"}`+"\n")
		if _, err := c.Recv(); err == nil {
			t.Errorf("Recv = nil error, want a decoding error")
		}
	})
	t.Run("clean EOF", func(t *testing.T) {
		c := feed(t, `{"t":"hello"}`+"\n")
		if m, err := c.Recv(); err != nil || m.Type != control.TypeHello {
			t.Fatalf("Recv = %+v, %v; want hello", m, err)
		}
		if _, err := c.Recv(); !errors.Is(err, io.EOF) {
			t.Errorf("Recv at end = %v, want io.EOF", err)
		}
	})
	t.Run("last line without newline", func(t *testing.T) {
		c := feed(t, `{"t":"exit","code":2}`)
		if m, err := c.Recv(); err != nil || m.Code != 2 {
			t.Errorf("Recv = %+v, %v; want exit 2", m, err)
		}
		if _, err := c.Recv(); !errors.Is(err, io.EOF) {
			t.Errorf("Recv at end = %v, want io.EOF", err)
		}
	})
}

func TestSendAfterClose(t *testing.T) {
	c, _, a, _ := pipe(t)
	a.Close()
	err := c.Send(control.Msg{Type: control.TypeStop, Signal: 15})
	if !errors.Is(err, io.ErrClosedPipe) || !strings.Contains(err.Error(), control.TypeStop) {
		t.Errorf("Send on a closed pipe = %v, want io.ErrClosedPipe wrapped with the message type", err)
	}
}
