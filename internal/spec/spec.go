// Package spec defines the one description of an app that every hull stage
// works from: what to package (program, args, files), how to run it (memory,
// cpus, ports) and what it may do (capabilities, egress).
//
// A Spec is filled from hull.yaml (strict: unknown keys are errors) and from
// command-line flags, flags winning. Validate checks every field and reports
// the first problem as one line naming the key and the value. The package
// does no I/O beyond reading the spec file; it never looks at the program.
package spec

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/hullvm/hull/internal/manifest"
)

// Defaults a spec gets when it leaves a field out.
const (
	DefaultMemory  Size = 128 << 20
	DefaultCPUs         = 1
	DefaultTmpSize Size = 64 << 20
	// MinMemory is the least guest memory the kernel and init boot in.
	MinMemory Size = 24 << 20
)

// Spec is the app description. The zero value is not valid; use Parse or
// fill fields and call Normalize then Validate.
type Spec struct {
	// Name names the image in the local store ([a-z0-9][a-z0-9._-]*).
	Name string `yaml:"name"`
	// Program is the host path of the ELF to package. A relative path is
	// relative to the spec file's directory (or the cwd for flags).
	Program string `yaml:"program"`
	// Args are passed to the program after argv[0].
	Args []string `yaml:"args"`
	// Env holds KEY=VALUE pairs baked into the image. They are visible in
	// the manifest: secrets do not belong here (use `hull run -e`).
	Env EnvList `yaml:"env"`
	// Cwd is the working directory inside the guest; default "/".
	Cwd string `yaml:"cwd"`
	// Files and Dirs copy host files and trees into the image.
	Files []Mount `yaml:"files"`
	Dirs  []Mount `yaml:"dirs"`
	// Ports are ingress forwards from the host to the guest.
	Ports []Port `yaml:"ports"`
	// Memory is guest RAM; CPUs the number of vCPUs.
	Memory Size `yaml:"memory"`
	CPUs   int  `yaml:"cpus"`
	// TmpSize caps the app's /tmp (tmpfs, noexec).
	TmpSize Size `yaml:"tmp_size"`
	// Capabilities the app keeps, e.g. NET_BIND_SERVICE. Default none.
	Capabilities []string `yaml:"capabilities"`
	// Egress lists the only destinations the app may reach.
	Egress []EgressRule `yaml:"egress"`
	// DNS configures the gateway's resolver.
	DNS DNS `yaml:"dns"`
	// Kernel names a kernel bundle (name or digest); "" is the default one.
	Kernel string `yaml:"kernel"`
	// CACerts puts the host CA bundle in the image; default true.
	CACerts *bool `yaml:"ca_certs"`
	// Hostname of the guest; default the spec name.
	Hostname string `yaml:"hostname"`
	// Sysroot is where libraries are looked up; default "/".
	Sysroot string `yaml:"sysroot"`
}

// Mount copies Host (a file or a directory) to Guest in the image.
type Mount struct {
	Host  string `yaml:"host"`
	Guest string `yaml:"guest"`
}

// DNS holds resolver settings of the gateway.
type DNS struct {
	// Upstream is host:port of the resolver the gateway asks for allowed
	// names; "" means the host's resolver.
	Upstream string `yaml:"upstream"`
}

// Error is a validation failure: Field names the key (e.g. "ports[1]"),
// Value the offending input.
type Error struct {
	Source string // file name or "flags"; may be empty
	Field  string
	Value  string
	Reason string
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.Source != "" {
		b.WriteString(e.Source)
		b.WriteString(": ")
	}
	b.WriteString(e.Field)
	if e.Value != "" {
		fmt.Fprintf(&b, " %q", e.Value)
	}
	b.WriteString(": ")
	b.WriteString(e.Reason)
	return b.String()
}

func fieldErr(field, value, format string, args ...any) *Error {
	return &Error{Field: field, Value: value, Reason: fmt.Sprintf(format, args...)}
}

// Load reads and parses a spec file. Relative host paths in it become
// relative to the file's directory.
func Load(file string) (*Spec, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("reading spec: %w", err)
	}
	s, err := Parse(data)
	if err != nil {
		var se *Error
		if errors.As(err, &se) {
			se.Source = file
			return nil, se
		}
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	s.resolveRelative(filepath.Dir(file))
	return s, nil
}

// Parse decodes a YAML spec strictly: unknown keys, wrong types and
// trailing documents are errors. It does not apply defaults or validate.
func Parse(data []byte) (*Spec, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var s Spec
	if err := dec.Decode(&s); err != nil {
		if errors.Is(err, io.EOF) {
			return &s, nil
		}
		return nil, yamlError(err)
	}
	var extra any
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, errors.New("more than one YAML document; a spec is one document")
	}
	return &s, nil
}

// yamlError turns yaml.v3's multi-line type errors into one line.
func yamlError(err error) error {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		return errors.New(strings.Join(te.Errors, "; "))
	}
	var se *Error
	if errors.As(err, &se) {
		return se
	}
	return err
}

func (s *Spec) resolveRelative(dir string) {
	abs := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(dir, p)
	}
	s.Program = abs(s.Program)
	for i := range s.Files {
		s.Files[i].Host = abs(s.Files[i].Host)
	}
	for i := range s.Dirs {
		s.Dirs[i].Host = abs(s.Dirs[i].Host)
	}
	if s.Sysroot != "" {
		s.Sysroot = abs(s.Sysroot)
	}
}

// Normalize fills defaults. Call it after merging flags.
func (s *Spec) Normalize() {
	if s.Memory == 0 {
		s.Memory = DefaultMemory
	}
	if s.CPUs == 0 {
		s.CPUs = DefaultCPUs
	}
	if s.TmpSize == 0 {
		s.TmpSize = DefaultTmpSize
	}
	if s.Cwd == "" {
		s.Cwd = "/"
	}
	if s.Name == "" && s.Program != "" {
		s.Name = NameFromProgram(s.Program)
	}
	if s.Hostname == "" {
		s.Hostname = hostnameFromName(s.Name)
	}
	if s.Sysroot == "" {
		s.Sysroot = "/"
	}
	if s.CACerts == nil {
		t := true
		s.CACerts = &t
	}
	for i, c := range s.Capabilities {
		s.Capabilities[i] = strings.TrimPrefix(strings.ToUpper(c), "CAP_")
	}
	sort.Strings(s.Capabilities)
}

// hostnameFromName turns an image name into a DNS label.
func hostnameFromName(name string) string {
	h := strings.Trim(strings.NewReplacer(".", "-", "_", "-").Replace(name), "-")
	if h == "" {
		return "app"
	}
	return h
}

// WantCACerts reports whether the host CA bundle goes into the image.
func (s *Spec) WantCACerts() bool { return s.CACerts == nil || *s.CACerts }

var (
	nameRE     = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)
	hostnameRE = regexp.MustCompile(`^[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$`)
	envKeyRE   = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// NameFromProgram derives an image name from a program path: its base
// name lowered, with characters outside [a-z0-9._-] replaced by '-'.
func NameFromProgram(p string) string {
	base := strings.ToLower(filepath.Base(p))
	var b strings.Builder
	for _, r := range base {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '.', r == '_', r == '-':
			b.WriteRune(r)
		default:
			b.WriteRune('-')
		}
	}
	n := strings.TrimLeft(b.String(), "._-")
	if len(n) > 63 {
		n = n[:63]
	}
	if n == "" {
		n = "app"
	}
	return n
}

// Validate checks the normalized spec and returns the first problem.
func (s *Spec) Validate() error {
	if s.Program == "" {
		return fieldErr("program", "", "missing: say which program to package (hull build ./app or program: in hull.yaml)")
	}
	if !nameRE.MatchString(s.Name) {
		return fieldErr("name", s.Name, "must be 1-63 characters of a-z, 0-9, '.', '_', '-', starting with a letter or digit")
	}
	if !hostnameRE.MatchString(s.Hostname) {
		return fieldErr("hostname", s.Hostname, "must be a DNS label (letters, digits, '-', at most 63)")
	}
	for i, e := range s.Env {
		if err := checkEnv(e); err != nil {
			return fieldErr(fmt.Sprintf("env[%d]", i), e, "%s", err)
		}
	}
	for i, a := range s.Args {
		if strings.IndexByte(a, 0) >= 0 {
			return fieldErr(fmt.Sprintf("args[%d]", i), a, "contains a NUL byte")
		}
	}
	if err := checkGuestPath("cwd", s.Cwd); err != nil {
		return err
	}
	for i, m := range s.Files {
		if err := m.check(fmt.Sprintf("files[%d]", i)); err != nil {
			return err
		}
	}
	for i, m := range s.Dirs {
		if err := m.check(fmt.Sprintf("dirs[%d]", i)); err != nil {
			return err
		}
	}
	if s.Memory < MinMemory {
		return fieldErr("memory", s.Memory.String(), "too small: the kernel and init need at least %s", MinMemory)
	}
	if s.Memory > 1<<40 {
		return fieldErr("memory", s.Memory.String(), "too large (more than 1T)")
	}
	if s.CPUs < 1 || s.CPUs > 64 {
		return fieldErr("cpus", strconv.Itoa(s.CPUs), "must be between 1 and 64")
	}
	if s.TmpSize < 1<<20 {
		return fieldErr("tmp_size", s.TmpSize.String(), "must be at least 1M")
	}
	if s.TmpSize >= s.Memory {
		return fieldErr("tmp_size", s.TmpSize.String(), "must be smaller than memory (%s): /tmp lives in guest RAM", s.Memory)
	}
	seen := map[string]bool{}
	for i, c := range s.Capabilities {
		if _, ok := manifest.Capabilities[c]; !ok {
			return fieldErr(fmt.Sprintf("capabilities[%d]", i), c, "unknown capability (e.g. NET_BIND_SERVICE)")
		}
		if manifest.Forbidden[c] {
			return fieldErr(fmt.Sprintf("capabilities[%d]", i), c, "hull never grants it: it would undo the lockdown")
		}
		seen[c] = true
	}
	hostPorts := map[string]int{}
	for i, p := range s.Ports {
		if err := p.Check(); err != nil {
			return fieldErr(fmt.Sprintf("ports[%d]", i), p.String(), "%s", err)
		}
		key := p.Proto + "/" + p.HostIP + ":" + strconv.Itoa(p.HostPort)
		if j, dup := hostPorts[key]; dup {
			return fieldErr(fmt.Sprintf("ports[%d]", i), p.String(), "host port already used by ports[%d]", j)
		}
		hostPorts[key] = i
	}
	for i := range s.Egress {
		// Check canonicalises the rule in place (default and lower-case
		// proto, CIDR form), so it must run on the element, not a copy.
		r := &s.Egress[i]
		if err := r.Check(); err != nil {
			return fieldErr(fmt.Sprintf("egress[%d]", i), r.String(), "%s", err)
		}
	}
	if s.DNS.Upstream != "" {
		if _, err := ParseHostPort(s.DNS.Upstream, 53); err != nil {
			return fieldErr("dns.upstream", s.DNS.Upstream, "%s", err)
		}
	}
	return nil
}

func checkEnv(kv string) error {
	k, _, ok := strings.Cut(kv, "=")
	if !ok {
		return errors.New("want KEY=VALUE")
	}
	if !envKeyRE.MatchString(k) {
		return fmt.Errorf("bad variable name %q (letters, digits, '_'; not starting with a digit)", k)
	}
	if strings.IndexByte(kv, 0) >= 0 {
		return errors.New("contains a NUL byte")
	}
	return nil
}

// checkGuestPath requires an absolute, clean path without "..".
func checkGuestPath(field, p string) error {
	if p == "" {
		return fieldErr(field, p, "empty guest path")
	}
	if !strings.HasPrefix(p, "/") {
		return fieldErr(field, p, "guest path must be absolute (start with /)")
	}
	for _, part := range strings.Split(p, "/") {
		if part == ".." {
			return fieldErr(field, p, "guest path must not contain '..'")
		}
	}
	if strings.IndexByte(p, 0) >= 0 {
		return fieldErr(field, p, "contains a NUL byte")
	}
	return nil
}

func (m Mount) check(field string) error {
	if m.Host == "" {
		return fieldErr(field+".host", "", "missing host path")
	}
	if err := checkGuestPath(field+".guest", m.Guest); err != nil {
		return err
	}
	if path.Clean(m.Guest) == "/" {
		return fieldErr(field+".guest", m.Guest, "cannot replace the root directory")
	}
	return nil
}

// UnmarshalYAML accepts "host:guest" or {host: …, guest: …}.
func (m *Mount) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		parsed, err := ParseMount(n.Value)
		if err != nil {
			return fmt.Errorf("line %d: %w", n.Line, err)
		}
		*m = parsed
		return nil
	}
	return decodeStrictMapping(n, "file mapping", map[string]any{"host": &m.Host, "guest": &m.Guest})
}

// ParseMount parses "host:guest". A lone absolute path maps to the same
// guest path; a lone relative path is refused, because its guest path
// would depend on the directory hull runs in.
func ParseMount(s string) (Mount, error) {
	host, guest, ok := strings.Cut(s, ":")
	if !ok {
		if !filepath.IsAbs(s) {
			return Mount{}, fmt.Errorf("%q: say where it goes in the guest: HOST:GUEST, e.g. %s:/etc/%s", s, s, filepath.Base(s))
		}
		return Mount{Host: s, Guest: filepath.Clean(s)}, nil
	}
	if host == "" || guest == "" {
		return Mount{}, fmt.Errorf("%q: want HOST:GUEST", s)
	}
	return Mount{Host: host, Guest: guest}, nil
}

// Merge overlays the non-zero fields of o onto s: flags over file.
// Lists given in o replace (not extend) those of s, except Env, Files,
// Dirs, Ports and Egress, which o extends.
func (s *Spec) Merge(o *Spec) {
	if o.Name != "" {
		s.Name = o.Name
	}
	if o.Program != "" {
		s.Program = o.Program
	}
	if o.Args != nil {
		s.Args = o.Args
	}
	s.Env = manifest.MergeEnv(s.Env, o.Env)
	if o.Cwd != "" {
		s.Cwd = o.Cwd
	}
	s.Files = append(s.Files, o.Files...)
	s.Dirs = append(s.Dirs, o.Dirs...)
	s.Ports = append(s.Ports, o.Ports...)
	if o.Memory != 0 {
		s.Memory = o.Memory
	}
	if o.CPUs != 0 {
		s.CPUs = o.CPUs
	}
	if o.TmpSize != 0 {
		s.TmpSize = o.TmpSize
	}
	if o.Capabilities != nil {
		s.Capabilities = o.Capabilities
	}
	s.Egress = append(s.Egress, o.Egress...)
	if o.DNS.Upstream != "" {
		s.DNS.Upstream = o.DNS.Upstream
	}
	if o.Kernel != "" {
		s.Kernel = o.Kernel
	}
	if o.CACerts != nil {
		s.CACerts = o.CACerts
	}
	if o.Hostname != "" {
		s.Hostname = o.Hostname
	}
	if o.Sysroot != "" {
		s.Sysroot = o.Sysroot
	}
}

// EnvList is KEY=VALUE pairs; in YAML a list of "KEY=VALUE" strings or
// a mapping of KEY: VALUE.
type EnvList []string

// UnmarshalYAML accepts both forms, keeping mapping order.
func (e *EnvList) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.SequenceNode:
		out := make(EnvList, 0, len(n.Content))
		for _, c := range n.Content {
			if c.Kind != yaml.ScalarNode {
				return fmt.Errorf("line %d: env entries must be KEY=VALUE strings", c.Line)
			}
			out = append(out, c.Value)
		}
		*e = out
	case yaml.MappingNode:
		out := make(EnvList, 0, len(n.Content)/2)
		for j := 0; j+1 < len(n.Content); j += 2 {
			k, v := n.Content[j], n.Content[j+1]
			if v.Kind != yaml.ScalarNode {
				return fmt.Errorf("line %d: env.%s: value must be a string", v.Line, k.Value)
			}
			out = append(out, k.Value+"="+v.Value)
		}
		*e = out
	default:
		return fmt.Errorf("line %d: env must be a list of KEY=VALUE or a mapping", n.Line)
	}
	return nil
}

// decodeStrictMapping decodes a mapping node into fields by key, because
// yaml.v3's Node.Decode forgets KnownFields: unknown keys are errors here.
func decodeStrictMapping(n *yaml.Node, what string, fields map[string]any) error {
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: %s must be a mapping or a string", n.Line, what)
	}
	for j := 0; j+1 < len(n.Content); j += 2 {
		k, v := n.Content[j], n.Content[j+1]
		dst, ok := fields[k.Value]
		if !ok {
			keys := make([]string, 0, len(fields))
			for f := range fields {
				keys = append(keys, f)
			}
			sort.Strings(keys)
			return fmt.Errorf("line %d: field %s not found in %s (known: %s)", k.Line, k.Value, what, strings.Join(keys, ", "))
		}
		if err := v.Decode(dst); err != nil {
			return fmt.Errorf("line %d: %s.%s: %w", v.Line, what, k.Value, yamlError(err))
		}
	}
	return nil
}
