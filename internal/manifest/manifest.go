// Package manifest is the contract between the image builder, the runner
// and the guest init: what to start, as whom, with which limits, and the
// record of every file in the image and why it is there.
//
// It is plain data with JSON encoding and no behaviour beyond checks, so
// the guest init can import it without pulling in host code. It never
// holds secrets: run-time environment travels over the control port.
package manifest

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// Version is bumped when a field changes meaning.
const Version = 1

// Paths inside the initramfs. The app tree is everything under AppRoot;
// the init and the hull directory are outside it and never visible to the
// app.
const (
	InitPath     = "/init"
	ManifestPath = "/hull/manifest.json"
	ModulesDir   = "/hull/modules"
	AppRoot      = "/app"
)

// ControlDevice is the virtio console (the VM's only one, port 0 of a
// single-port virtio-serial device) that carries the control protocol
// and the app's output; the kernel's own console is the serial ttyS0.
const ControlDevice = "/dev/hvc0"

// The guest network hull uses: a /24 with the guest, the gateway (which
// also stands for the host's loopback) and the DNS server.
const (
	GuestCIDR = "10.0.2.15/24"
	GuestIP   = "10.0.2.15"
	GatewayIP = "10.0.2.2"
	DNSIP     = "10.0.2.3"
	// HostAlias is the name the guest uses for the host's loopback.
	HostAlias = "host.hull.internal"
)

// DefaultNoFile is the app's RLIMIT_NOFILE. The init hands the program
// to execveat on descriptor number DefaultNoFile, which is one past the
// highest descriptor the app can ever hold, so no later exec can name it.
const DefaultNoFile = 65536

// App user identity: unprivileged, no password, no shell.
const (
	AppUser = "app"
	AppUID  = 1000
	AppGID  = 1000
	AppHome = "/home/app"
)

// Manifest describes one image.
type Manifest struct {
	Version int    `json:"version"`
	Name    string `json:"name"`
	// Program is the guest path of the program (also its argv[0]).
	Program  string   `json:"program"`
	Args     []string `json:"args"`
	Env      []string `json:"env"`
	Cwd      string   `json:"cwd"`
	Hostname string   `json:"hostname"`
	User     User     `json:"user"`
	// Capabilities the app keeps (names without CAP_).
	Capabilities []string `json:"capabilities"`
	// TmpSize caps /tmp in bytes.
	TmpSize int64 `json:"tmp_size"`
	// NoFile is the app's RLIMIT_NOFILE hard limit.
	NoFile  int      `json:"nofile"`
	Kernel  Kernel   `json:"kernel"`
	Modules []string `json:"modules"` // initramfs paths in load order
	Network Network  `json:"network"`
	Runtime Runtime  `json:"runtime"`
	// AppDisk is the read-only EROFS disk holding the app tree.
	AppDisk AppDisk `json:"app_disk"`
	Files   []File  `json:"files"`
	// System lists what the image holds outside the app's view: the init
	// and the kernel modules it loads.
	System []File `json:"system"`
}

// AppDisk identifies the app disk the init mounts as the app's root.
type AppDisk struct {
	FS     string `json:"fs"` // "erofs"
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// User is the identity the app runs as.
type User struct {
	Name string `json:"name"`
	UID  int    `json:"uid"`
	GID  int    `json:"gid"`
	Home string `json:"home"`
}

// Kernel records which kernel bundle the image was built for.
type Kernel struct {
	Name    string `json:"name"`
	Digest  string `json:"digest"`
	Release string `json:"release"`
}

// Network is the guest's static configuration.
type Network struct {
	Address string `json:"address"` // CIDR form
	Gateway string `json:"gateway"`
	DNS     string `json:"dns"`
}

// Runtime carries the spec's run-time defaults for the host side; the
// guest ignores them. Flags of `hull run` override them.
type Runtime struct {
	Memory      int64    `json:"memory"`
	CPUs        int      `json:"cpus"`
	Ports       []string `json:"ports,omitempty"`
	Egress      []string `json:"egress,omitempty"`
	DNSUpstream string   `json:"dns_upstream,omitempty"`
}

// File is one entry of the app tree.
type File struct {
	Path   string `json:"path"` // guest path (inside the app root)
	Type   string `json:"type"` // "file", "dir", "symlink"
	Mode   uint32 `json:"mode"` // permission bits
	Size   int64  `json:"size,omitempty"`
	SHA256 string `json:"sha256,omitempty"`
	Link   string `json:"link,omitempty"`
	Reason string `json:"reason"`
	// Overrides is set when a user file replaced a generated one; it
	// holds the reason the generated file had.
	Overrides string `json:"overrides,omitempty"`
}

// Marshal encodes m canonically (stable field order, indented).
func (m *Manifest) Marshal() ([]byte, error) {
	b, err := json.MarshalIndent(m, "", " ")
	if err != nil {
		return nil, fmt.Errorf("encoding manifest: %w", err)
	}
	return append(b, '\n'), nil
}

// Unmarshal decodes and checks a manifest.
func Unmarshal(data []byte) (*Manifest, error) {
	var m Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("decoding manifest: %w", err)
	}
	if m.Version != Version {
		return nil, fmt.Errorf("manifest version %d, this hull reads %d: rebuild the image", m.Version, Version)
	}
	if m.Program == "" {
		return nil, errors.New("manifest names no program")
	}
	return &m, nil
}

// MergeEnv returns base with over applied: a later KEY replaces an
// earlier one in place, new keys are appended in order.
func MergeEnv(base, over []string) []string {
	if len(over) == 0 {
		return base
	}
	out := append([]string(nil), base...)
	idx := map[string]int{}
	for i, kv := range out {
		k, _, _ := strings.Cut(kv, "=")
		idx[k] = i
	}
	for _, kv := range over {
		k, _, _ := strings.Cut(kv, "=")
		if i, ok := idx[k]; ok {
			out[i] = kv
			continue
		}
		idx[k] = len(out)
		out = append(out, kv)
	}
	return out
}
