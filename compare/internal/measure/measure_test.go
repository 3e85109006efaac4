package measure

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestSummarise(t *testing.T) {
	tests := []struct {
		name string
		in   []float64
		want Stats
	}{
		{"none", nil, Stats{}},
		{"one", []float64{5}, Stats{Min: 5, Median: 5, Max: 5, Values: []float64{5}}},
		{"odd", []float64{3, 1, 2}, Stats{Min: 1, Median: 2, Max: 3, Values: []float64{3, 1, 2}}},
		// The lower middle: a value that was measured, not an average.
		{"even", []float64{4, 1, 3, 2}, Stats{Min: 1, Median: 2, Max: 4, Values: []float64{4, 1, 3, 2}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := append([]float64(nil), tt.in...)
			if got := Summarise(in); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Summarise(%v) = %+v, want %+v", tt.in, got, tt.want)
			}
			if !reflect.DeepEqual(in, tt.in) && tt.in != nil {
				t.Errorf("Summarise reordered its input: %v", in)
			}
		})
	}
}

func TestBenchmark(t *testing.T) {
	// Captured from redis-benchmark 7.0 -t set,get -q: progress lines
	// end in \r, results in \n.
	real, err := os.ReadFile("testdata/redis-benchmark-q.txt")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		out     string
		want    map[string]float64
		wantErr bool
	}{
		{"redis-benchmark 7.0", string(real), map[string]float64{"SET": 52631.58, "GET": 66666.67}, false},
		{"older format", "SET: 12345.68 requests per second\nGET: 23456.79 requests per second\n",
			map[string]float64{"SET": 12345.68, "GET": 23456.79}, false},
		{"progress only", "SET: rps=0.0 (overall: -nan) avg_msec=-nan (overall: -nan)\r", nil, true},
		{"error", "Could not connect to Redis at 127.0.0.1:1: Connection refused\n", nil, true},
		{"empty", "", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Benchmark(tt.out)
			if (err != nil) != tt.wantErr {
				t.Fatalf("Benchmark error = %v, want error %v", err, tt.wantErr)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Benchmark = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestRedisInfo(t *testing.T) {
	// Captured from redis-cli INFO memory (redis 7.0): CRLF lines and a
	// "# Memory" section header.
	b, err := os.ReadFile("testdata/redis-info-memory.txt")
	if err != nil {
		t.Fatal(err)
	}
	info := RedisInfo(string(b))
	for key, want := range map[string]string{"used_memory": "914608", "used_memory_rss": "12079104", "mem_allocator": "jemalloc-5.3.0"} {
		if got := info[key]; got != want {
			t.Errorf("RedisInfo[%q] = %q, want %q", key, got, want)
		}
	}
	if _, ok := info["# Memory"]; ok {
		t.Errorf("the section header became a key")
	}
}

func TestParseGuestInfo(t *testing.T) {
	line := `{"probe":"guestinfo","meminfo_kib":{"MemTotal":231000,"MemAvailable":201000,"MemFree":190000},"devices":["/dev/null","/dev/zero"]}`
	tests := []struct {
		name    string
		text    string
		want    GuestInfo
		wantErr string
	}{
		{"app output", line + "\n", GuestInfo{Memory: GuestMemory{TotalKiB: 231000, AvailableKiB: 201000, UsedKiB: 30000}, Devices: []string{"/dev/null", "/dev/zero"}}, ""},
		{"after console noise", "[    2.1] random: crng init done\r\nboot " + line + "\r\ncompare: guestinfo end\r\n",
			GuestInfo{Memory: GuestMemory{TotalKiB: 231000, AvailableKiB: 201000, UsedKiB: 30000}, Devices: []string{"/dev/null", "/dev/zero"}}, ""},
		{"no devices", `{"probe":"guestinfo","meminfo_kib":{"MemTotal":10,"MemAvailable":4},"devices":null}`,
			GuestInfo{Memory: GuestMemory{TotalKiB: 10, AvailableKiB: 4, UsedKiB: 6}, Devices: []string{}}, ""},
		{"probe error", `{"probe":"guestinfo","devices":[],"error":"open /proc/meminfo: no such file or directory"}`, GuestInfo{}, "no such file"},
		{"no MemAvailable", `{"probe":"guestinfo","meminfo_kib":{"MemTotal":10}}`, GuestInfo{}, "MemAvailable"},
		{"truncated", `{"probe":"guestinfo","meminfo_kib":{"MemTot`, GuestInfo{}, "probe line"},
		{"missing", "kernel panic\n", GuestInfo{}, "no guestinfo probe line"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseGuestInfo(tt.text)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseGuestInfo error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseGuestInfo: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ParseGuestInfo = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestStatusField(t *testing.T) {
	status := "Name:\tqemu-system-x86\nVmPeak:\t 1234 kB\nVmRSS:\t  98765 kB\nThreads:\t4\n"
	if got, err := statusField(status, "VmRSS"); err != nil || got != 98765 {
		t.Errorf("statusField(VmRSS) = %d, %v; want 98765, nil", got, err)
	}
	if _, err := statusField(status, "VmSwap"); err == nil {
		t.Errorf("statusField(VmSwap) found a field that is not there")
	}
	if _, err := RSSKiB(os.Getpid()); err != nil {
		t.Errorf("RSSKiB(self): %v", err)
	}
}

// fakeRedis answers each connection's first request with answer and
// records what it was sent.
func fakeRedis(t *testing.T, answer string) (port int, got <-chan string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	ch := make(chan string, 16)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			buf := make([]byte, 64)
			n, _ := c.Read(buf)
			ch <- string(buf[:n])
			io.WriteString(c, answer)
			c.Close()
		}
	}()
	return l.Addr().(*net.TCPAddr).Port, ch
}

func TestPing(t *testing.T) {
	port, sent := fakeRedis(t, "+PONG\r\n")
	if err := Ping(port); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	if got := <-sent; got != "*1\r\n$4\r\nPING\r\n" {
		t.Errorf("Ping sent %q, want what redis-cli PING sends", got)
	}
	port, _ = fakeRedis(t, "-LOADING Redis is loading the dataset in memory\r\n")
	if err := Ping(port); err == nil {
		t.Errorf("Ping accepted a -LOADING answer")
	}
}

func TestWaitPing(t *testing.T) {
	port, _ := fakeRedis(t, "+PONG\r\n")
	start := time.Now()
	d, err := WaitPing(context.Background(), start, port, nil)
	if err != nil || d <= 0 {
		t.Fatalf("WaitPing = %v, %v; want a positive duration", d, err)
	}

	// Nothing listens: the wait ends when the VM exits, or at the deadline.
	free, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	close(exited)
	if _, err := WaitPing(context.Background(), start, free, exited); !errors.Is(err, ErrExited) {
		t.Errorf("WaitPing with the VM gone = %v, want ErrExited", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := WaitPing(ctx, start, free, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("WaitPing past its deadline = %v, want DeadlineExceeded", err)
	}
}

// A port that accepts and hangs up (QEMU's forward before the guest
// listens does just that) is not an answer.
func TestPingNeedsAnswer(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		bufio.NewReader(c).ReadString('\n')
		c.Close() // hang up without a word
	}()
	if err := Ping(l.Addr().(*net.TCPAddr).Port); err == nil {
		t.Errorf("Ping passed against a server that said nothing")
	}
}
