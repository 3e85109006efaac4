// Package control is the host ↔ guest-init protocol, spoken on the one
// virtio console the VM has besides the kernel's serial console.
//
// Everything the two sides exchange travels on that single channel, as
// frames: a kind byte, a 4-byte big-endian length and the payload. Control
// frames hold one JSON message: the guest says where boot got to (with its
// uptime, so the host can tell where time went), when the app started,
// what the lockdown denied and how the app ended; the host sends the
// run-time configuration (which may hold secrets: it exists only in memory
// on both sides) and stop requests. Output frames carry the app's stdout
// and stderr bytes, so they reach the host unmixed with each other and
// with kernel messages.
//
// One channel rather than a port per stream, because with virtio-mmio
// every receive queue the guest driver fills costs 1024 pages of RAM.
//
// The package is shared by the init and the runner and imports neither.
package control

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
)

// Message types.
const (
	// Guest → host.
	TypeHello   = "hello"   // init is up; Uptime set
	TypeStage   = "stage"   // a boot stage finished: Stage, Uptime
	TypeStarted = "started" // the app was exec'd: PID
	TypeListen  = "listen"  // the app listens: Proto, Addr, Port
	TypeWarn    = "warn"    // something the user should know: Text
	TypeDenied  = "denied"  // lockdown refused a syscall: Syscall, Text
	TypeError   = "error"   // the app could not start: Text, Code
	TypeExit    = "exit"    // the app ended: Code, Signal
	TypeLog     = "log"     // init diagnostics: Text
	// Host → guest.
	TypeConfig = "config" // run-time config: Env, Args, Ports
	TypeStop   = "stop"   // deliver Signal to the app
)

// Frame kinds.
const (
	KindControl byte = 'c' // payload: one JSON Msg
	KindStdout  byte = '1' // payload: app stdout bytes
	KindStderr  byte = '2' // payload: app stderr bytes
)

// Msg is one control message. Fields not used by a type are omitted.
type Msg struct {
	Type    string   `json:"t"`
	Uptime  float64  `json:"up,omitempty"` // guest seconds since kernel start
	Stage   string   `json:"stage,omitempty"`
	PID     int      `json:"pid,omitempty"`
	Code    int      `json:"code,omitempty"`
	Signal  int      `json:"sig,omitempty"`
	Text    string   `json:"text,omitempty"`
	Syscall string   `json:"syscall,omitempty"`
	Proto   string   `json:"proto,omitempty"`
	Addr    string   `json:"addr,omitempty"`
	Port    int      `json:"port,omitempty"`
	Env     []string `json:"env,omitempty"`
	Args    []string `json:"args,omitempty"`
	ArgsSet bool     `json:"args_set,omitempty"` // Args replace the image's
	Ports   []int    `json:"ports,omitempty"`    // guest ports forwarded to (for bind checks)
}

// Frame is one received frame: a control message or a chunk of output.
type Frame struct {
	Kind byte
	Msg  Msg    // KindControl
	Data []byte // KindStdout, KindStderr
}

// MaxFrame bounds one frame's payload so a confused peer cannot exhaust
// memory.
const MaxFrame = 1 << 20

// ErrTooLarge is a frame over MaxFrame.
var ErrTooLarge = errors.New("control frame too large")

// Conn reads and writes frames on a stream. Sending is safe for
// concurrent use; Recv must be called from one goroutine.
type Conn struct {
	mu sync.Mutex
	w  io.Writer
	r  *bufio.Reader
}

// NewConn wraps a bidirectional stream.
func NewConn(rw io.ReadWriter) *Conn {
	return &Conn{w: rw, r: bufio.NewReaderSize(rw, 64<<10)}
}

func (c *Conn) writeFrame(kind byte, payload []byte) error {
	if len(payload) > MaxFrame {
		return fmt.Errorf("%w: %d bytes (limit %d)", ErrTooLarge, len(payload), MaxFrame)
	}
	var hdr [5]byte
	hdr[0] = kind
	binary.BigEndian.PutUint32(hdr[1:], uint32(len(payload)))
	c.mu.Lock()
	defer c.mu.Unlock()
	// One write per frame keeps frames whole on streams that split writes.
	buf := make([]byte, 0, len(hdr)+len(payload))
	buf = append(append(buf, hdr[:]...), payload...)
	if _, err := c.w.Write(buf); err != nil {
		return err
	}
	return nil
}

// Send writes one control message.
func (c *Conn) Send(m Msg) error {
	b, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("encoding %s message: %w", m.Type, err)
	}
	if err := c.writeFrame(KindControl, b); err != nil {
		return fmt.Errorf("sending %s message: %w", m.Type, err)
	}
	return nil
}

// SendOutput writes app output of kind KindStdout or KindStderr, split
// into frames of at most MaxFrame bytes.
func (c *Conn) SendOutput(kind byte, p []byte) error {
	if kind != KindStdout && kind != KindStderr {
		return fmt.Errorf("bad output kind %q", kind)
	}
	for len(p) > 0 {
		n := min(len(p), MaxFrame)
		if err := c.writeFrame(kind, p[:n]); err != nil {
			return fmt.Errorf("sending output: %w", err)
		}
		p = p[n:]
	}
	return nil
}

// Recv reads the next frame. It returns io.EOF at a clean end between
// frames and io.ErrUnexpectedEOF inside one.
func (c *Conn) Recv() (Frame, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(c.r, hdr[:]); err != nil {
		return Frame{}, err
	}
	n := binary.BigEndian.Uint32(hdr[1:])
	if n > MaxFrame {
		return Frame{}, fmt.Errorf("%w: %d bytes (limit %d)", ErrTooLarge, n, MaxFrame)
	}
	payload := make([]byte, n)
	if _, err := io.ReadFull(c.r, payload); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return Frame{}, err
	}
	f := Frame{Kind: hdr[0]}
	switch f.Kind {
	case KindControl:
		if err := json.Unmarshal(payload, &f.Msg); err != nil {
			return Frame{}, fmt.Errorf("decoding control message: %w", err)
		}
	case KindStdout, KindStderr:
		f.Data = payload
	default:
		return Frame{}, fmt.Errorf("unknown control frame kind %q", f.Kind)
	}
	return f, nil
}
