package netgw

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
)

// startForward binds the host side of one forward and starts serving it.
func (g *Gateway) startForward(f Forward) error {
	switch f.Proto {
	case "tcp":
		ln, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(f.Host))
		if err != nil {
			return forwardErr(f, err)
		}
		g.forwardAddrs = append(g.forwardAddrs, ln.Addr().(*net.TCPAddr).AddrPort())
		if !g.track(ln) {
			return net.ErrClosed
		}
		g.wg.Add(1)
		go g.acceptTCP(f, ln)
	case "udp":
		pc, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(f.Host))
		if err != nil {
			return forwardErr(f, err)
		}
		g.forwardAddrs = append(g.forwardAddrs, pc.LocalAddr().(*net.UDPAddr).AddrPort())
		if !g.track(pc) {
			return net.ErrClosed
		}
		g.wg.Add(1)
		go g.serveUDPForward(f, pc)
	}
	return nil
}

func forwardErr(f Forward, err error) error {
	switch {
	case errors.Is(err, syscall.EADDRINUSE):
		return fmt.Errorf("-p %s: host port %d/%s on %s is already in use; pick another host port: %w", f, f.Host.Port(), f.Proto, f.Host.Addr(), err)
	case errors.Is(err, syscall.EACCES):
		return fmt.Errorf("-p %s: binding host port %d needs privileges; pick a port above 1023: %w", f, f.Host.Port(), err)
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return fmt.Errorf("-p %s: %s is not an address of this host: %w", f, f.Host.Addr(), err)
	}
	return fmt.Errorf("-p %s: listening on %s: %w", f, f.Host, err)
}

func (g *Gateway) acceptTCP(f Forward, ln *net.TCPListener) {
	defer g.wg.Done()
	defer g.untrack(ln)
	for {
		c, err := ln.AcceptTCP()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of fds or similar: back off instead of spinning.
			select {
			case <-g.ctx.Done():
				return
			case <-time.After(50 * time.Millisecond):
			}
			continue
		}
		if !g.enter() {
			c.Close()
			return
		}
		go func() {
			defer g.wg.Done()
			g.serveIngressTCP(f, c)
		}()
	}
}

func (g *Gateway) serveIngressTCP(f Forward, c *net.TCPConn) {
	guest := netip.AddrPortFrom(g.cfg.GuestIP, f.GuestPort)
	fl := Flow{
		Time: time.Now(), Direction: Ingress, Proto: "tcp", Guest: guest,
		Remote: c.RemoteAddr().(*net.TCPAddr).AddrPort(), Verdict: Allow, Rule: f.String(),
	}
	reset := func() {
		c.SetLinger(0) // the client sees a reset, as if the port were closed
		c.Close()
	}
	if !g.beginFlow() {
		reset()
		fl.Verdict, fl.Rule, fl.Reason = Deny, "", "gateway flow limit reached"
		g.rec.record(fl)
		return
	}
	defer g.endFlow()
	if !g.track(c) {
		return
	}
	defer g.untrack(c)
	ctx, cancel := context.WithTimeout(g.ctx, g.cfg.DialTimeout)
	gc, err := dialStackTCP(ctx, g.stack, guest)
	cancel()
	if err != nil {
		reset()
		fl.Error = "guest: " + err.Error()
		fl.Duration = time.Since(fl.Time)
		g.rec.record(fl)
		return
	}
	if !g.track(gc) {
		c.Close()
		return
	}
	defer g.untrack(gc)
	fl.BytesIn, fl.BytesOut = splice(c, gc)
	fl.Duration = time.Since(fl.Time)
	g.rec.record(fl)
}

// udpSession is one host client's association with the guest port.
type udpSession struct {
	client netip.AddrPort
	conn   *gonet.UDPConn
	last   atomic.Int64 // unix nanos of the last datagram either way
	in     atomic.Int64 // host → guest bytes
	out    atomic.Int64 // guest → host bytes
}

// serveUDPForward reads datagrams from the host socket and relays each
// client's to the guest over its own netstack endpoint; replies go back
// to that client. A session ends after UDPIdle without traffic.
func (g *Gateway) serveUDPForward(f Forward, pc *net.UDPConn) {
	defer g.wg.Done()
	defer g.untrack(pc)
	guest := netip.AddrPortFrom(g.cfg.GuestIP, f.GuestPort)
	var mu sync.Mutex
	sessions := map[netip.AddrPort]*udpSession{}
	defer func() {
		mu.Lock()
		for _, s := range sessions {
			s.conn.Close()
		}
		mu.Unlock()
	}()

	buf := make([]byte, 65535)
	for {
		n, client, err := pc.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		mu.Lock()
		s := sessions[client]
		mu.Unlock()
		if s == nil {
			s = g.newUDPSession(f, pc, guest, client, func(s *udpSession) {
				mu.Lock()
				delete(sessions, s.client)
				mu.Unlock()
			})
			if s == nil {
				continue
			}
			mu.Lock()
			sessions[client] = s
			mu.Unlock()
		}
		s.last.Store(time.Now().UnixNano())
		if _, err := s.conn.Write(buf[:n]); err == nil {
			s.in.Add(int64(n))
		}
	}
}

// newUDPSession opens the guest side of a new client's session and starts
// the goroutine carrying the guest's replies; nil if it cannot.
func (g *Gateway) newUDPSession(f Forward, pc *net.UDPConn, guest, client netip.AddrPort, done func(*udpSession)) *udpSession {
	fl := Flow{Time: time.Now(), Direction: Ingress, Proto: "udp", Guest: guest, Remote: client, Verdict: Allow, Rule: f.String()}
	if !g.beginFlow() {
		fl.Verdict, fl.Rule, fl.Reason = Deny, "", "gateway flow limit reached"
		g.denyOnce(fl)
		return nil
	}
	if !g.enter() {
		g.endFlow()
		return nil
	}
	gc, err := dialStackUDP(g.stack, guest)
	if err != nil {
		g.endFlow()
		g.wg.Done()
		fl.Error = "guest: " + err.Error()
		g.rec.record(fl)
		return nil
	}
	s := &udpSession{client: client, conn: gc}
	s.last.Store(time.Now().UnixNano())
	go func() {
		defer g.wg.Done()
		defer g.endFlow()
		defer func() {
			done(s)
			gc.Close()
			fl.BytesIn, fl.BytesOut = s.in.Load(), s.out.Load()
			fl.Duration = time.Since(fl.Time)
			g.rec.record(fl)
		}()
		buf := make([]byte, 65535)
		for {
			gc.SetReadDeadline(time.Now().Add(g.cfg.UDPIdle))
			n, err := gc.Read(buf)
			if err != nil {
				if isTimeout(err) && time.Since(time.Unix(0, s.last.Load())) < g.cfg.UDPIdle {
					continue
				}
				return
			}
			s.last.Store(time.Now().UnixNano())
			if _, err := pc.WriteToUDPAddrPort(buf[:n], client); err == nil {
				s.out.Add(int64(n))
			}
		}
	}()
	return s
}
