// Package control is the host ↔ guest-init protocol spoken on the
// dedicated virtio-serial control port: one JSON object per line.
//
// The guest says where boot got to (with its uptime, so the host can tell
// where time went), when the app started, what the lockdown denied, and
// how the app ended. The host sends the run-time configuration (which may
// hold secrets: it exists only in memory on both sides) and stop requests.
// The package is shared by the init and the runner and imports neither.
package control

import (
	"bufio"
	"encoding/json"
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
	TypeConfig = "config" // run-time config: Env, Ports
	TypeStop   = "stop"   // deliver Signal to the app
)

// Msg is one protocol line. Fields not used by a type are omitted.
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

// Conn reads and writes messages on a stream. Send is safe for concurrent
// use; Recv must be called from one goroutine.
type Conn struct {
	mu sync.Mutex
	w  io.Writer
	r  *bufio.Reader
}

// NewConn wraps a bidirectional stream.
func NewConn(rw io.ReadWriter) *Conn {
	return &Conn{w: rw, r: bufio.NewReaderSize(rw, 64<<10)}
}

// MaxLine bounds one message so a confused peer cannot exhaust memory.
const MaxLine = 1 << 20

// Send writes one message.
func (c *Conn) Send(m Msg) error {
	b, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("encoding %s message: %w", m.Type, err)
	}
	if len(b) > MaxLine {
		return fmt.Errorf("%s message of %d bytes exceeds the %d-byte limit", m.Type, len(b), MaxLine)
	}
	b = append(b, '\n')
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, err := c.w.Write(b); err != nil {
		return fmt.Errorf("sending %s message: %w", m.Type, err)
	}
	return nil
}

// Recv reads the next message. It returns io.EOF at a clean end.
func (c *Conn) Recv() (Msg, error) {
	var line []byte
	for {
		chunk, isPrefix, err := c.r.ReadLine()
		if err != nil {
			return Msg{}, err
		}
		line = append(line, chunk...)
		if len(line) > MaxLine {
			return Msg{}, fmt.Errorf("control message longer than %d bytes", MaxLine)
		}
		if !isPrefix {
			break
		}
	}
	var m Msg
	if err := json.Unmarshal(line, &m); err != nil {
		return Msg{}, fmt.Errorf("decoding control message: %w", err)
	}
	return m, nil
}
