// Command probe checks, from inside a hull guest, what ordinary programs
// expect of their environment: name resolution through glibc, a CA store,
// a user identity and home, a read-only root, a bounded /tmp, and
// environment values delivered byte-exact. It prints one JSON object.
package main

import (
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"sort"
	"strings"
	"syscall"
)

type report struct {
	Localhost   []string          `json:"localhost"`
	Hostname    string            `json:"hostname"`
	HostnameIPs []string          `json:"hostname_ips"`
	HostAlias   []string          `json:"host_alias"`
	CACerts     int               `json:"ca_certs"`
	CAErr       string            `json:"ca_err,omitempty"`
	OpenSSLCA   bool              `json:"openssl_ca"`
	User        string            `json:"user"`
	UID         string            `json:"uid"`
	Home        string            `json:"home"`
	HomeDir     string            `json:"home_dir"`
	UserErr     string            `json:"user_err,omitempty"`
	WriteRoot   string            `json:"write_root"`
	WriteEtc    string            `json:"write_etc"`
	TmpFill     string            `json:"tmp_fill"`
	TmpWritten  int64             `json:"tmp_written"`
	TmpExecMode string            `json:"tmp_exec"`
	EnvHex      map[string]string `json:"env_hex"`
	Cwd         string            `json:"cwd"`
}

func errText(err error) string {
	if err == nil {
		return "ok"
	}
	var en syscall.Errno
	if errors.As(err, &en) {
		switch en {
		case syscall.EROFS:
			return "EROFS"
		case syscall.ENOSPC:
			return "ENOSPC"
		case syscall.EACCES:
			return "EACCES"
		case syscall.EPERM:
			return "EPERM"
		}
	}
	return err.Error()
}

func main() {
	var r report
	r.Localhost, _ = net.LookupHost("localhost")
	sort.Strings(r.Localhost)
	r.Hostname, _ = os.Hostname()
	r.HostnameIPs, _ = net.LookupHost(r.Hostname)
	r.HostAlias, _ = net.LookupHost("host.hull.internal")
	pool, err := x509.SystemCertPool()
	if err != nil {
		r.CAErr = err.Error()
	} else {
		r.CACerts = len(pool.Subjects()) //nolint:staticcheck // a count is all we need
	}
	if b, err := os.ReadFile("/usr/lib/ssl/cert.pem"); err == nil && strings.Contains(string(b), "BEGIN CERTIFICATE") {
		r.OpenSSLCA = true
	}
	if u, err := user.Current(); err != nil {
		r.UserErr = err.Error()
	} else {
		r.User, r.UID, r.HomeDir = u.Username, u.Uid, u.HomeDir
	}
	r.Home, _ = os.UserHomeDir()
	r.WriteRoot = errText(os.WriteFile("/probe-was-here", []byte("x"), 0o644))
	r.WriteEtc = errText(os.WriteFile("/etc/hosts", []byte("x"), 0o644))
	f, err := os.Create("/tmp/fill")
	if err != nil {
		r.TmpFill = errText(err)
	} else {
		chunk := make([]byte, 1<<20)
		for {
			n, err := f.Write(chunk)
			r.TmpWritten += int64(n)
			if err != nil {
				r.TmpFill = errText(err)
				break
			}
			if r.TmpWritten > 1<<30 {
				r.TmpFill = "no limit"
				break
			}
		}
		f.Close()
		os.Remove("/tmp/fill")
	}
	os.WriteFile("/tmp/x.sh", []byte("#!/bin/sh\n"), 0o755)
	if st, err := os.Stat("/tmp/x.sh"); err == nil {
		r.TmpExecMode = fmt.Sprintf("%o", st.Mode().Perm())
	}
	r.EnvHex = map[string]string{}
	for _, k := range []string{"URL", "SPACES", "UNI", "EMPTY"} {
		if v, ok := os.LookupEnv(k); ok {
			r.EnvHex[k] = hex.EncodeToString([]byte(v))
		}
	}
	r.Cwd, _ = os.Getwd()
	b, _ := json.Marshal(r)
	fmt.Println(string(b))
}
