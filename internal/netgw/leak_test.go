package netgw

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"
)

// lineEcho answers one line per connection and closes it.
func lineEcho(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return
	}
	io.WriteString(c, line)
}

func serveLines(ln net.Listener) (stop func()) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				lineEcho(c)
			}()
		}
	}()
	return func() { ln.Close(); wg.Wait() }
}

func roundTrip(c net.Conn, msg string) error {
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, msg+"\n"); err != nil {
		return err
	}
	got, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if got != msg+"\n" {
		return fmt.Errorf("echo = %q; want %q", got, msg)
	}
	return nil
}

func countFDs(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// TestNoLeaks opens and closes 1,000 connections through an ingress
// forward and 1,000 through an allowed egress, then checks the process's
// goroutine and fd counts are back where they started.
func TestNoLeaks(t *testing.T) {
	if _, err := os.Stat("/proc/self/fd"); err != nil {
		t.Skip("counting fds needs /proc/self/fd (Linux procfs)")
	}
	hostLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	stopHost := serveLines(hostLn)
	defer stopHost()
	hostPort := netip.MustParseAddrPort(hostLn.Addr().String()).Port()

	env := startEnv(t, envOpts{
		allow:    []string{fmt.Sprintf("127.0.0.1/32:%d", hostPort)},
		forwards: []Forward{{Proto: "tcp", Host: netip.MustParseAddrPort("127.0.0.1:0"), GuestPort: 7000}},
	})
	stopGuest := serveLines(env.guest.listenTCP(t, 7000))
	defer stopGuest()
	fwd := env.gw.ForwardAddrs()[0].String()

	ingress := func(i int) error {
		c, err := net.Dial("tcp", fwd)
		if err != nil {
			return err
		}
		return roundTrip(c, fmt.Sprintf("in %d", i))
	}
	egress := func(i int) error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, err := env.guest.dial(ctx, fmt.Sprintf("10.0.2.2:%d", hostPort))
		if err != nil {
			return err
		}
		return roundTrip(c, fmt.Sprintf("out %d", i))
	}
	run := func(n int, f func(int) error) {
		t.Helper()
		const workers = 8
		var wg sync.WaitGroup
		errs := make(chan error, workers)
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; i < n; i += workers {
					if err := f(i); err != nil {
						errs <- fmt.Errorf("connection %d: %w", i, err)
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
	}

	// Warm up: lazily started netstack workers and pools are not leaks.
	run(16, ingress)
	run(16, egress)
	settle := func() (g, fds int) {
		time.Sleep(50 * time.Millisecond)
		runtime.GC()
		return runtime.NumGoroutine(), countFDs(t)
	}
	waitActive := func() {
		waitFor(t, "all flows to end", 10*time.Second, func() bool {
			env.gw.mu.Lock()
			defer env.gw.mu.Unlock()
			return env.gw.flows == 0
		})
	}
	waitActive()
	g0, fd0 := settle()

	run(1000, ingress)
	run(1000, egress)
	waitActive()

	const slack = 2
	var g1, fd1 int
	deadline := time.Now().Add(10 * time.Second)
	for {
		g1, fd1 = settle()
		if (g1 <= g0+slack && fd1 <= fd0+slack) || time.Now().After(deadline) {
			break
		}
	}
	if g1 > g0+slack {
		buf := make([]byte, 1<<20)
		t.Errorf("goroutines: %d before, %d after 2,000 connections; want at most %d more\n%s", g0, g1, slack, buf[:runtime.Stack(buf, true)])
	}
	if fd1 > fd0+slack {
		t.Errorf("open fds: %d before, %d after 2,000 connections; want at most %d more", fd0, fd1, slack)
	}
	if s := env.gw.Summary(); s.Allowed+s.Ingress < 2000+32 || s.Denied != 0 {
		t.Errorf("Summary = %v; want every connection allowed and logged", s)
	}
	t.Logf("goroutines %d -> %d, fds %d -> %d", g0, g1, fd0, fd1)
}

// TestCloseReleasesEverything checks that Close with live flows stops
// every goroutine the gateway started and closes its sockets.
func TestCloseReleasesEverything(t *testing.T) {
	if _, err := os.Stat("/proc/self/fd"); err != nil {
		t.Skip("counting fds needs /proc/self/fd (Linux procfs)")
	}
	g0, fd0 := runtime.NumGoroutine(), countFDs(t)
	func() {
		hostLn, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer hostLn.Close()
		hostPort := netip.MustParseAddrPort(hostLn.Addr().String()).Port()
		env := startEnv(t, envOpts{
			allow:    []string{fmt.Sprintf("127.0.0.1/32:%d", hostPort)},
			forwards: []Forward{{Proto: "tcp", Host: netip.MustParseAddrPort("127.0.0.1:0"), GuestPort: 7000}, {Proto: "udp", Host: netip.MustParseAddrPort("127.0.0.1:0"), GuestPort: 7001}},
		})
		// A live egress flow, a live ingress flow and a UDP session.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		out, err := env.guest.dial(ctx, fmt.Sprintf("10.0.2.2:%d", hostPort))
		if err != nil {
			t.Fatal(err)
		}
		defer out.Close()
		hc, err := hostLn.Accept()
		if err != nil {
			t.Fatal(err)
		}
		defer hc.Close()
		ln, err := listenStackTCP(env.guest.s, netip.AddrPortFrom(guestAddr.Addr(), 7000))
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		in, err := net.Dial("tcp", env.gw.ForwardAddrs()[0].String())
		if err != nil {
			t.Fatal(err)
		}
		defer in.Close()
		gc, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		defer gc.Close()
		u, err := net.Dial("udp", env.gw.ForwardAddrs()[1].String())
		if err != nil {
			t.Fatal(err)
		}
		defer u.Close()
		u.Write([]byte("x"))

		if err := env.gw.Close(); err != nil {
			t.Fatal(err)
		}
		env.guest.close()
	}()
	deadline := time.Now().Add(10 * time.Second)
	var g1, fd1 int
	for {
		time.Sleep(20 * time.Millisecond)
		g1, fd1 = runtime.NumGoroutine(), countFDs(t)
		if (g1 <= g0 && fd1 <= fd0) || time.Now().After(deadline) {
			break
		}
	}
	if g1 > g0 || fd1 > fd0 {
		buf := make([]byte, 1<<20)
		t.Errorf("after Close: goroutines %d -> %d, fds %d -> %d; want no growth\n%s", g0, g1, fd0, fd1, buf[:runtime.Stack(buf, true)])
	}
}
