// Package measure takes the numbers `make compare` prints, the same way
// for both VMs: time from launch to the first answer on a forwarded port
// (a Redis PING or an HTTP 200), the resident memory of a QEMU process,
// Redis's own memory report, redis-benchmark's throughput and what the
// guestinfo probe prints from inside a guest (/proc/meminfo, /dev).
//
// It starts no VM and has no opinion about which side is which. Parsers
// are pure functions; the probes that touch the network only ever dial
// 127.0.0.1.
package measure

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Stats summarises repeated measurements.
type Stats struct {
	Min    float64   `json:"min"`
	Median float64   `json:"median"`
	Max    float64   `json:"max"`
	Values []float64 `json:"values"`
}

// Summarise returns min, median (the lower middle for an even count) and
// max of v; the zero Stats for no values.
func Summarise(v []float64) Stats {
	if len(v) == 0 {
		return Stats{}
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return Stats{Min: s[0], Median: s[(len(s)-1)/2], Max: s[len(s)-1], Values: slices.Clone(v)}
}

// pollEvery is the pause between probes while waiting for a guest: short
// enough to time a boot to a few milliseconds, long enough not to steal
// the CPU an emulated guest needs.
const pollEvery = 10 * time.Millisecond

// WaitPing polls a Redis server at 127.0.0.1:port with PING until it
// answers +PONG and returns the time since start. It gives up when ctx
// ends or exited is closed (the VM is gone).
func WaitPing(ctx context.Context, start time.Time, port int, exited <-chan struct{}) (time.Duration, error) {
	return waitFor(ctx, start, exited, func() bool { return Ping(port) == nil })
}

// WaitHTTP polls http://127.0.0.1:port/ until it answers 200.
func WaitHTTP(ctx context.Context, start time.Time, port int, exited <-chan struct{}) (time.Duration, error) {
	client := &http.Client{Timeout: time.Second}
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	return waitFor(ctx, start, exited, func() bool {
		resp, err := client.Get(url)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// ErrExited is returned by the waits when the VM exited first.
var ErrExited = errors.New("the VM exited before it answered")

func waitFor(ctx context.Context, start time.Time, exited <-chan struct{}, ok func() bool) (time.Duration, error) {
	for {
		if ok() {
			return time.Since(start), nil
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-exited:
			return 0, ErrExited
		case <-time.After(pollEvery):
		}
	}
}

// pingRequest is what `redis-cli PING` sends: the command as a RESP
// array of one bulk string.
const pingRequest = "*1\r\n$4\r\nPING\r\n"

// Ping sends the request `redis-cli PING` sends and wants +PONG. It does
// not start redis-cli: polling every few milliseconds would count the
// tool's own start-up into the boot time, and load the machine.
func Ping(port int) error {
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	if _, err := io.WriteString(c, pingRequest); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if strings.TrimSpace(line) != "+PONG" {
		return fmt.Errorf("PING answered %q", strings.TrimSpace(line))
	}
	return nil
}

// RSSKiB reads VmRSS of a process from /proc.
func RSSKiB(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	return statusField(string(b), "VmRSS")
}

func statusField(status, name string) (int64, error) {
	for _, line := range strings.Split(status, "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || k != name {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			break
		}
		return strconv.ParseInt(f[0], 10, 64)
	}
	return 0, fmt.Errorf("no %s in /proc status", name)
}

// ChildNamed finds a child process of pid whose command name contains
// name (hull's QEMU is its child), searching every thread's children.
func ChildNamed(pid int, name string) (int, error) {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		for _, c := range strings.Fields(string(b)) {
			comm, err := os.ReadFile("/proc/" + c + "/comm")
			if err != nil || !strings.Contains(string(comm), name) {
				continue
			}
			return strconv.Atoi(c)
		}
	}
	return 0, fmt.Errorf("process %d has no %s child", pid, name)
}

// RedisInfo parses the text of Redis's INFO reply into key → value.
func RedisInfo(text string) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if k, v, ok := strings.Cut(line, ":"); ok {
			m[k] = v
		}
	}
	return m
}

var benchLine = regexp.MustCompile(`^([A-Z_]+): ([0-9.]+) requests per second`)

// Benchmark parses `redis-benchmark -q` output into test → requests per
// second. Progress lines (carriage-return separated) are skipped.
func Benchmark(out string) (map[string]float64, error) {
	res := map[string]float64{}
	for _, line := range strings.FieldsFunc(out, func(r rune) bool { return r == '\n' || r == '\r' }) {
		m := benchLine.FindStringSubmatch(strings.TrimSpace(line))
		if m == nil {
			continue
		}
		v, err := strconv.ParseFloat(m[2], 64)
		if err != nil {
			return nil, fmt.Errorf("redis-benchmark line %q: %w", line, err)
		}
		res[m[1]] = v
	}
	if len(res) == 0 {
		return nil, fmt.Errorf("no results in redis-benchmark output %q", firstLine(out))
	}
	return res, nil
}

// GuestMemory is a guest's own view of its memory.
type GuestMemory struct {
	TotalKiB     int64 `json:"total_kib"`
	AvailableKiB int64 `json:"available_kib"`
	// UsedKiB is MemTotal − MemAvailable: memory the guest could not give
	// to a new program without swapping.
	UsedKiB int64 `json:"used_kib"`
}

// GuestInfo is what the guestinfo probe (compare/testdata/guestinfo)
// reports from inside a guest.
type GuestInfo struct {
	Memory GuestMemory
	// Devices are the device nodes under /dev the probe found.
	Devices []string
}

// guestInfoPrefix starts the probe's line.
const guestInfoPrefix = `{"probe":"guestinfo"`

// ParseGuestInfo finds the probe's JSON line in text (a console or the
// app's output, where it may follow other text on the same line).
func ParseGuestInfo(text string) (GuestInfo, error) {
	for _, line := range strings.Split(text, "\n") {
		i := strings.Index(line, guestInfoPrefix)
		if i < 0 {
			continue
		}
		var p struct {
			KiB     map[string]int64 `json:"meminfo_kib"`
			Devices []string         `json:"devices"`
			Error   string           `json:"error"`
		}
		if err := json.Unmarshal([]byte(strings.TrimSpace(line[i:])), &p); err != nil {
			return GuestInfo{}, fmt.Errorf("guestinfo probe line: %w", err)
		}
		if p.Error != "" {
			return GuestInfo{}, fmt.Errorf("guestinfo probe: %s", p.Error)
		}
		total, avail := p.KiB["MemTotal"], p.KiB["MemAvailable"]
		if total == 0 || avail == 0 {
			return GuestInfo{}, errors.New("guestinfo probe: no MemTotal or MemAvailable")
		}
		if p.Devices == nil {
			p.Devices = []string{}
		}
		return GuestInfo{
			Memory:  GuestMemory{TotalKiB: total, AvailableKiB: avail, UsedKiB: total - avail},
			Devices: p.Devices,
		}, nil
	}
	return GuestInfo{}, errors.New("no guestinfo probe line in the output")
}

// FreePort asks the kernel for a free TCP port on 127.0.0.1.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}
