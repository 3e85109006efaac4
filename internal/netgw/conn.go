package netgw

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"
)

// dialStackTCP opens a TCP connection from netstack s to dst. Unlike
// gonet.DialContextTCP its errors keep their meaning:
// errors.Is(err, syscall.ECONNREFUSED) holds when the peer reset the SYN.
func dialStackTCP(ctx context.Context, s *stack.Stack, dst netip.AddrPort) (*gonet.TCPConn, error) {
	opErr := func(err error) error {
		return &net.OpError{Op: "dial", Net: "tcp", Addr: net.TCPAddrFromAddrPort(dst), Err: err}
	}
	var wq waiter.Queue
	ep, terr := s.NewEndpoint(tcp.ProtocolNumber, ipv4.ProtocolNumber, &wq)
	if terr != nil {
		return nil, opErr(netErr(terr))
	}
	entry, notify := waiter.NewChannelEntry(waiter.WritableEvents)
	wq.EventRegister(&entry)
	defer wq.EventUnregister(&entry)

	terr = ep.Connect(fullAddr(dst))
	if _, started := terr.(*tcpip.ErrConnectStarted); started {
		select {
		case <-ctx.Done():
			ep.Close()
			return nil, opErr(ctx.Err())
		case <-notify:
		}
		terr = ep.LastError()
	}
	if terr != nil {
		ep.Close()
		return nil, opErr(netErr(terr))
	}
	return gonet.NewTCPConn(&wq, ep), nil
}

// halfCloser is a stream whose write side can be shut on its own.
type halfCloser interface {
	net.Conn
	CloseWrite() error
}

// noHalfClose adapts a net.Conn without CloseWrite (a custom Dial's
// connection): closing the write side is then a no-op and the peer sees
// EOF only when the whole connection closes.
type noHalfClose struct{ net.Conn }

func (noHalfClose) CloseWrite() error { return nil }

func asHalfCloser(c net.Conn) halfCloser {
	if h, ok := c.(halfCloser); ok {
		return h
	}
	return noHalfClose{c}
}

var copyBufs = sync.Pool{New: func() any { b := make([]byte, 64<<10); return &b }}

// splice copies a→b and b→a until both directions have ended. A direction
// that reads EOF half-closes its destination (so half-close passes
// through); one that fails aborts both connections. Both connections are
// closed when splice returns, with the byte counts each way. The second
// direction runs in a goroutine that splice waits for.
func splice(a, b halfCloser) (ab, ba int64) {
	var once sync.Once
	abort := func() { once.Do(func() { a.Close(); b.Close() }) }
	done := make(chan struct{})
	go func() {
		defer close(done)
		ba = pump(a, b, abort)
	}()
	ab = pump(b, a, abort)
	<-done
	a.Close()
	b.Close()
	return ab, ba
}

func pump(dst, src halfCloser, abort func()) int64 {
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	buf := *bp
	var n int64
	for {
		k, rerr := src.Read(buf)
		if k > 0 {
			w, werr := dst.Write(buf[:k])
			n += int64(w)
			if werr != nil {
				abort()
				return n
			}
		}
		if rerr == io.EOF {
			if dst.CloseWrite() != nil {
				abort()
			}
			return n
		}
		if rerr != nil {
			abort()
			return n
		}
	}
}

// relayDatagrams copies datagrams both ways between two connected packet
// conns until neither direction has carried a datagram for idle, or one
// side fails or is closed. It closes both and returns the byte counts.
func relayDatagrams(a, b net.Conn, idle time.Duration) (ab, ba int64) {
	var last atomic.Int64
	last.Store(time.Now().UnixNano())
	var once sync.Once
	stop := func() { once.Do(func() { a.Close(); b.Close() }) }
	run := func(dst, src net.Conn, n *int64) {
		defer stop()
		buf := make([]byte, 65535)
		for {
			src.SetReadDeadline(time.Now().Add(idle))
			k, err := src.Read(buf)
			if err != nil {
				if isTimeout(err) && time.Since(time.Unix(0, last.Load())) < idle {
					continue
				}
				if errors.Is(err, syscall.ECONNREFUSED) {
					continue // an ICMP unreachable from an earlier datagram
				}
				return
			}
			last.Store(time.Now().UnixNano())
			if _, err := dst.Write(buf[:k]); err == nil {
				*n += int64(k)
			}
		}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		run(a, b, &ba)
	}()
	run(b, a, &ab)
	<-done
	return ab, ba
}

// isTimeout reports a deadline expiry from either a host socket or gonet.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// dialStackUDP opens a connected UDP endpoint from netstack s to dst.
func dialStackUDP(s *stack.Stack, dst netip.AddrPort) (*gonet.UDPConn, error) {
	var wq waiter.Queue
	ep, terr := s.NewEndpoint(udp.ProtocolNumber, ipv4.ProtocolNumber, &wq)
	if terr == nil {
		if terr = ep.Connect(fullAddr(dst)); terr != nil {
			ep.Close()
		}
	}
	if terr != nil {
		return nil, &net.OpError{Op: "dial", Net: "udp", Addr: net.UDPAddrFromAddrPort(dst), Err: netErr(terr)}
	}
	return gonet.NewUDPConn(&wq, ep), nil
}

// listenStackUDP binds an unconnected UDP endpoint of netstack s to addr.
func listenStackUDP(s *stack.Stack, addr netip.AddrPort) (*gonet.UDPConn, error) {
	var wq waiter.Queue
	ep, terr := s.NewEndpoint(udp.ProtocolNumber, ipv4.ProtocolNumber, &wq)
	if terr == nil {
		if terr = ep.Bind(fullAddr(addr)); terr != nil {
			ep.Close()
		}
	}
	if terr != nil {
		return nil, &net.OpError{Op: "listen", Net: "udp", Addr: net.UDPAddrFromAddrPort(addr), Err: netErr(terr)}
	}
	return gonet.NewUDPConn(&wq, ep), nil
}

// listenStackTCP listens on addr in netstack s.
func listenStackTCP(s *stack.Stack, addr netip.AddrPort) (*gonet.TCPListener, error) {
	var wq waiter.Queue
	ep, terr := s.NewEndpoint(tcp.ProtocolNumber, ipv4.ProtocolNumber, &wq)
	if terr == nil {
		if terr = ep.Bind(fullAddr(addr)); terr == nil {
			terr = ep.Listen(128)
		}
		if terr != nil {
			ep.Close()
		}
	}
	if terr != nil {
		return nil, &net.OpError{Op: "listen", Net: "tcp", Addr: net.TCPAddrFromAddrPort(addr), Err: netErr(terr)}
	}
	return gonet.NewTCPListener(s, &wq, ep), nil
}
