// Command guestinfo is the guest probe of `make compare`: run as the app
// in either VM right after boot, it prints one JSON line,
//
//	{"probe":"guestinfo","meminfo_kib":{"MemTotal":…},"devices":["/dev/null",…]}
//
// — the guest kernel's /proc/meminfo and the device nodes under /dev
// that the app can see — and exits. It needs only read access to
// /proc/meminfo and /dev. Errors go into the line ("error") and the exit
// status stays 0: the host reads the line and decides.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

type result struct {
	Probe   string           `json:"probe"`
	KiB     map[string]int64 `json:"meminfo_kib,omitempty"`
	Devices []string         `json:"devices"`
	Error   string           `json:"error,omitempty"`
}

func main() {
	r := result{Probe: "guestinfo", Devices: []string{}}
	kib, err := meminfo("/proc/meminfo")
	r.KiB = kib
	devs, derr := devices("/dev")
	r.Devices = devs
	if err = errors.Join(err, derr); err != nil {
		r.Error = err.Error()
	}
	b, _ := json.Marshal(r)
	fmt.Println(string(b))
}

func meminfo(path string) (map[string]int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	kib := map[string]int64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			continue
		}
		if v, err := strconv.ParseInt(fields[0], 10, 64); err == nil {
			kib[name] = v
		}
	}
	return kib, sc.Err()
}

// devices lists the character and block devices under dir, not
// following symlinks. Subdirectories the app cannot read are skipped:
// what it cannot list it cannot find.
func devices(dir string) ([]string, error) {
	out := []string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p != dir && errors.Is(err, fs.ErrPermission) {
				return fs.SkipDir
			}
			return err
		}
		if d.Type()&fs.ModeDevice != 0 {
			out = append(out, p)
		}
		return nil
	})
	sort.Strings(out)
	return out, err
}
