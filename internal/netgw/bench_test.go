package netgw

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// The benchmarks measure the gateway with the tests' fake guest (a second
// netstack in this process) at the guest link's real MTU of 1500, so they
// show the gateway's own cost, not QEMU's or a guest kernel's. Run them
// with:
//
//	go test -run '^$' -bench . -benchtime 3s ./internal/netgw
//
// req/s is reported as a custom metric, MB/s by b.SetBytes.

// guestHTTP serves a small HTTP response in the fake guest on port 80 and
// large bodies at /bytes?n=N... via a fixed-size path.
func guestHTTP(b *testing.B, env *testEnv) {
	b.Helper()
	ln := env.guest.listenTCP(b, 80)
	body := make([]byte, 1<<20)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/1m" {
			w.Write(body)
			return
		}
		io.WriteString(w, "ok\n")
	})}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); srv.Serve(ln) }()
	b.Cleanup(func() { srv.Close(); wg.Wait() })
}

func ingressEnv(b *testing.B, mtu int) (*testEnv, string) {
	env := startEnv(b, envOpts{mtu: mtu, forwards: []Forward{{Proto: "tcp", Host: netip.MustParseAddrPort("127.0.0.1:0"), GuestPort: 80}}})
	guestHTTP(b, env)
	return env, "http://" + env.gw.ForwardAddrs()[0].String()
}

func reportRate(b *testing.B) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
}

// BenchmarkIngressHTTP: small GETs over kept-alive connections, 8 at a time.
func BenchmarkIngressHTTP(b *testing.B) {
	_, url := ingressEnv(b, 0)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	defer client.CloseIdleConnections()
	b.SetParallelism(4)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := get(client, url+"/"); err != nil {
				b.Error(err)
				return
			}
		}
	})
	reportRate(b)
}

// BenchmarkIngressHTTPNewConn: one TCP connection per GET.
func BenchmarkIngressHTTPNewConn(b *testing.B) {
	_, url := ingressEnv(b, 0)
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	b.SetParallelism(4)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := get(client, url+"/"); err != nil {
				b.Error(err)
				return
			}
		}
	})
	reportRate(b)
}

// BenchmarkIngressDownload: 1 MiB bodies from the guest, one stream.
func BenchmarkIngressDownload(b *testing.B) { benchDownload(b, 0) }

// BenchmarkIngressDownloadMTU64K: the same with a 65520-byte guest MTU,
// what QEMU's virtio-net host_mtu=65520 would give a real guest.
func BenchmarkIngressDownloadMTU64K(b *testing.B) { benchDownload(b, 65520) }

func benchDownload(b *testing.B, mtu int) {
	_, url := ingressEnv(b, mtu)
	client := &http.Client{}
	defer client.CloseIdleConnections()
	b.SetBytes(1 << 20)
	b.ResetTimer()
	for range b.N {
		if err := get(client, url+"/1m"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkIngressUpload: a raw TCP stream into the guest, which discards it.
func BenchmarkIngressUpload(b *testing.B) {
	env := startEnv(b, envOpts{forwards: []Forward{{Proto: "tcp", Host: netip.MustParseAddrPort("127.0.0.1:0"), GuestPort: 9}}})
	ln := env.guest.listenTCP(b, 9)
	done := make(chan int64, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- 0
			return
		}
		n, _ := io.Copy(io.Discard, c)
		c.Close()
		done <- n
	}()
	c, err := net.Dial("tcp", env.gw.ForwardAddrs()[0].String())
	if err != nil {
		b.Fatal(err)
	}
	chunk := make([]byte, 1<<20)
	b.SetBytes(int64(len(chunk)))
	b.ResetTimer()
	for range b.N {
		if _, err := c.Write(chunk); err != nil {
			b.Fatal(err)
		}
	}
	c.(*net.TCPConn).CloseWrite()
	if n := <-done; n != int64(b.N)*int64(len(chunk)) {
		b.Fatalf("guest received %d bytes; want %d", n, b.N*len(chunk))
	}
	c.Close()
}

// BenchmarkEgressDownload: the guest fetches 1 MiB bodies from a host
// server through the loopback alias (policy check and host dial per
// connection; kept alive).
func BenchmarkEgressDownload(b *testing.B) {
	body := make([]byte, 1<<20)
	srv := newCountingServer(b, string(body))
	env := startEnv(b, envOpts{allow: []string{fmt.Sprintf("127.0.0.1/32:%d", srv.port())}})
	client := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) { return env.guest.dial(ctx, addr) },
	}, Timeout: 30 * time.Second}
	defer client.CloseIdleConnections()
	url := fmt.Sprintf("http://10.0.2.2:%d/", srv.port())
	b.SetBytes(1 << 20)
	b.ResetTimer()
	for range b.N {
		if err := get(client, url); err != nil {
			b.Fatal(err)
		}
	}
}

func get(c *http.Client, url string) error {
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return err
	}
	if resp.StatusCode != 200 {
		return fmt.Errorf("GET %s: status %d", url, resp.StatusCode)
	}
	return nil
}
