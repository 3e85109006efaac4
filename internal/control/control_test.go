package control_test

import (
	"bytes"
	"encoding/binary"
	"errors"
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
func pipe(t *testing.T) (*control.Conn, *control.Conn) {
	t.Helper()
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	return control.NewConn(a), control.NewConn(b)
}

// rw joins a reader and a writer into one stream.
type rw struct {
	io.Reader
	io.Writer
}

// chunkyWriter writes one byte per Write and yields in between, so that
// unsynchronised concurrent senders would interleave their frames.
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

func frame(kind byte, payload string) string {
	var hdr [5]byte
	hdr[0] = kind
	binary.BigEndian.PutUint32(hdr[1:], uint32(len(payload)))
	return string(hdr[:]) + payload
}

// Control messages and output chunks interleave on one channel and come
// out in order, each whole.
func TestRoundTrip(t *testing.T) {
	host, guest := pipe(t)
	type sent struct {
		kind byte
		msg  control.Msg
		data string
	}
	seq := []sent{
		{kind: control.KindControl, msg: control.Msg{Type: control.TypeHello, Uptime: 0.125}},
		{kind: control.KindStdout, data: "hello\n"},
		{kind: control.KindControl, msg: control.Msg{Type: control.TypeListen, Proto: "tcp", Addr: "0.0.0.0", Port: 8080}},
		{kind: control.KindStderr, data: "binary \x00\xff\n\r ünï"},
		{kind: control.KindControl, msg: control.Msg{Type: control.TypeWarn, Text: "line one\nline two \"quoted\" ☃"}},
		{kind: control.KindControl, msg: control.Msg{Type: control.TypeConfig, Env: []string{"SECRET=a=b c", "EMPTY="}, Args: []string{"x"}, ArgsSet: true, Ports: []int{80, 443}}},
		{kind: control.KindControl, msg: control.Msg{Type: control.TypeExit, Code: 3, Signal: 9}},
	}
	errc := make(chan error, 1)
	go func() {
		for _, s := range seq {
			var err error
			if s.kind == control.KindControl {
				err = guest.Send(s.msg)
			} else {
				err = guest.SendOutput(s.kind, []byte(s.data))
			}
			if err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	for i, want := range seq {
		got, err := host.Recv()
		if err != nil {
			t.Fatalf("Recv #%d: %v", i, err)
		}
		if got.Kind != want.kind {
			t.Fatalf("Recv #%d kind = %q, want %q", i, got.Kind, want.kind)
		}
		if want.kind == control.KindControl && !reflect.DeepEqual(got.Msg, want.msg) {
			t.Errorf("Recv #%d = %+v, want %+v", i, got.Msg, want.msg)
		}
		if want.kind != control.KindControl && string(got.Data) != want.data {
			t.Errorf("Recv #%d data = %q, want %q", i, got.Data, want.data)
		}
	}
	if err := <-errc; err != nil {
		t.Fatalf("send: %v", err)
	}
}

// TestWireFormat pins the bytes both sides speak: the guest init and the
// runner are different binaries, possibly of different builds.
func TestWireFormat(t *testing.T) {
	tests := []struct {
		name string
		send func(*control.Conn) error
		want string
	}{
		{"exit", func(c *control.Conn) error { return c.Send(control.Msg{Type: control.TypeExit, Code: 1, Signal: 9}) },
			frame('c', `{"t":"exit","code":1,"sig":9}`)},
		{"hello", func(c *control.Conn) error { return c.Send(control.Msg{Type: control.TypeHello, Uptime: 1.5}) },
			frame('c', `{"t":"hello","up":1.5}`)},
		{"config", func(c *control.Conn) error {
			return c.Send(control.Msg{Type: control.TypeConfig, Env: []string{"A=1"}, Args: []string{"x"}, ArgsSet: true, Ports: []int{80}})
		}, frame('c', `{"t":"config","env":["A=1"],"args":["x"],"args_set":true,"ports":[80]}`)},
		{"stdout", func(c *control.Conn) error { return c.SendOutput(control.KindStdout, []byte("hi\n")) }, frame('1', "hi\n")},
		{"stderr", func(c *control.Conn) error { return c.SendOutput(control.KindStderr, []byte{0, 1}) }, frame('2', "\x00\x01")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := tt.send(control.NewConn(rw{Reader: strings.NewReader(""), Writer: &buf})); err != nil {
				t.Fatal(err)
			}
			if got := buf.String(); got != tt.want {
				t.Errorf("wrote %q, want %q", got, tt.want)
			}
		})
	}
}

// Large output is split into frames no bigger than MaxFrame and arrives
// complete.
func TestLargeOutputSplits(t *testing.T) {
	var buf bytes.Buffer
	c := control.NewConn(rw{Reader: strings.NewReader(""), Writer: &buf})
	data := bytes.Repeat([]byte("0123456789abcdef"), (control.MaxFrame*2+100)/16)
	if err := c.SendOutput(control.KindStdout, data); err != nil {
		t.Fatal(err)
	}
	r := control.NewConn(rw{Reader: &buf, Writer: io.Discard})
	var got []byte
	frames := 0
	for {
		f, err := r.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(f.Data) > control.MaxFrame {
			t.Errorf("frame of %d bytes, want at most %d", len(f.Data), control.MaxFrame)
		}
		frames++
		got = append(got, f.Data...)
	}
	if !bytes.Equal(got, data) || frames != 3 {
		t.Errorf("got %d bytes in %d frames, want %d bytes in 3", len(got), frames, len(data))
	}
}

func TestConcurrentSendKeepsFramesWhole(t *testing.T) {
	const senders, each = 8, 40
	pr, pw := io.Pipe()
	t.Cleanup(func() { pr.Close(); pw.Close() })
	out := control.NewConn(rw{Reader: strings.NewReader(""), Writer: chunkyWriter{pw}})
	in := control.NewConn(rw{Reader: pr, Writer: io.Discard})
	var wg sync.WaitGroup
	for s := 1; s <= senders; s++ {
		wg.Add(1)
		go func(s int) {
			defer wg.Done()
			for i := 0; i < each; i++ {
				if err := out.Send(control.Msg{Type: control.TypeLog, PID: s, Code: i, Text: strings.Repeat("x", 50)}); err != nil {
					t.Error(err)
					return
				}
			}
		}(s)
	}
	go func() { wg.Wait(); pw.Close() }()
	next := map[int]int{}
	for n := 0; n < senders*each; n++ {
		f, err := in.Recv()
		if err != nil {
			t.Fatalf("frame %d: %v (frames interleaved?)", n, err)
		}
		if f.Msg.Code != next[f.Msg.PID] {
			t.Errorf("sender %d: message %d arrived, want %d", f.Msg.PID, f.Msg.Code, next[f.Msg.PID])
		}
		next[f.Msg.PID]++
	}
	if _, err := in.Recv(); !errors.Is(err, io.EOF) {
		t.Errorf("after all frames: %v, want io.EOF", err)
	}
}

func TestRecvErrors(t *testing.T) {
	big := make([]byte, 5)
	big[0] = 'c'
	binary.BigEndian.PutUint32(big[1:], control.MaxFrame+1)
	tests := []struct {
		name  string
		input string
		want  error // nil: any non-EOF error
	}{
		{"too large", string(big), control.ErrTooLarge},
		{"truncated header", "c\x00\x00", io.ErrUnexpectedEOF},
		{"truncated payload", frame('c', `{"t":"exit"}`)[:9], io.ErrUnexpectedEOF},
		{"unknown kind", frame('x', "hi"), nil},
		{"bad json", frame('c', `{"t":`), nil},
		{"wrong field type", frame('c', `{"t":"exit","code":"3"}`), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := control.NewConn(rw{Reader: strings.NewReader(tt.input), Writer: io.Discard})
			_, err := c.Recv()
			if err == nil || errors.Is(err, io.EOF) {
				t.Fatalf("Recv = %v, want an error that is not io.EOF", err)
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("Recv = %v, want %v", err, tt.want)
			}
		})
	}
	c := control.NewConn(rw{Reader: strings.NewReader(""), Writer: io.Discard})
	if _, err := c.Recv(); !errors.Is(err, io.EOF) {
		t.Errorf("Recv on an empty stream = %v, want io.EOF", err)
	}
}

func TestSendErrors(t *testing.T) {
	a, b := net.Pipe()
	b.Close()
	c := control.NewConn(a)
	if err := c.Send(control.Msg{Type: control.TypeExit}); err == nil {
		t.Error("Send to a closed peer succeeded")
	}
	var buf bytes.Buffer
	c = control.NewConn(rw{Reader: strings.NewReader(""), Writer: &buf})
	if err := c.Send(control.Msg{Type: control.TypeWarn, Text: strings.Repeat("x", control.MaxFrame)}); !errors.Is(err, control.ErrTooLarge) {
		t.Errorf("oversized Send = %v, want ErrTooLarge", err)
	}
	if err := c.SendOutput('x', []byte("hi")); err == nil {
		t.Error("SendOutput with a bad kind succeeded")
	}
	if buf.Len() != 0 {
		t.Errorf("failed sends wrote %d bytes", buf.Len())
	}
}
