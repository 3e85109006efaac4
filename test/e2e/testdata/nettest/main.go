// Command nettest performs the network actions given as arguments from
// inside a guest and prints one JSON line per action with what happened:
//
//	get URL | dial ADDR | resolve NAME | udp ADDR
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"syscall"
	"time"
)

type result struct {
	Action string   `json:"action"`
	Target string   `json:"target"`
	OK     bool     `json:"ok"`
	Status int      `json:"status,omitempty"`
	Body   string   `json:"body,omitempty"`
	Addrs  []string `json:"addrs,omitempty"`
	Errno  string   `json:"errno,omitempty"`
	Error  string   `json:"error,omitempty"`
}

func errno(err error) string {
	var en syscall.Errno
	switch {
	case errors.As(err, &en):
		switch en {
		case syscall.ECONNREFUSED:
			return "ECONNREFUSED"
		case syscall.ECONNRESET:
			return "ECONNRESET"
		case syscall.ETIMEDOUT:
			return "ETIMEDOUT"
		}
		return en.Error()
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded):
		return "TIMEOUT"
	}
	var dns *net.DNSError
	if errors.As(err, &dns) {
		return "DNS"
	}
	return "OTHER"
}

func main() {
	args := os.Args[1:]
	for len(args) >= 2 {
		action, target := args[0], args[1]
		args = args[2:]
		r := result{Action: action, Target: target}
		var err error
		switch action {
		case "get":
			c := &http.Client{Timeout: 5 * time.Second}
			var resp *http.Response
			if resp, err = c.Get(target); err == nil {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				r.Status, r.Body = resp.StatusCode, string(b)
			}
		case "dial":
			var c net.Conn
			if c, err = net.DialTimeout("tcp", target, 5*time.Second); err == nil {
				c.Close()
			}
		case "resolve":
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			r.Addrs, err = net.DefaultResolver.LookupHost(ctx, target)
			cancel()
		case "udp":
			var c net.Conn
			if c, err = net.Dial("udp", target); err == nil {
				c.SetDeadline(time.Now().Add(2 * time.Second))
				c.Write([]byte("ping"))
				buf := make([]byte, 64)
				var n int
				n, err = c.Read(buf)
				r.Body = string(buf[:n])
				c.Close()
			}
		default:
			err = fmt.Errorf("unknown action %q", action)
		}
		r.OK = err == nil
		if err != nil {
			r.Errno, r.Error = errno(err), err.Error()
		}
		b, _ := json.Marshal(r)
		fmt.Println(string(b))
	}
}
