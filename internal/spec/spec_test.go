package spec_test

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/hullvm/hull/internal/spec"
)

// validSpec returns a normalized spec that passes Validate; tests mutate
// one field of it at a time.
func validSpec(t *testing.T) *spec.Spec {
	t.Helper()
	s := &spec.Spec{Name: "web", Program: "/srv/web"}
	s.Normalize()
	if err := s.Validate(); err != nil {
		t.Fatalf("base spec: Validate() = %v, want nil", err)
	}
	return s
}

func mustParsePort(t *testing.T, s string) spec.Port {
	t.Helper()
	p, err := spec.ParsePort(s)
	if err != nil {
		t.Fatalf("ParsePort(%q): %v", s, err)
	}
	return p
}

func TestParseStrict(t *testing.T) {
	tests := []struct {
		name    string
		yaml    string
		wantErr []string // substrings the error must hold; nil means success
	}{
		{name: "empty document", yaml: ""},
		{name: "known keys", yaml: "name: web\nprogram: ./web\nmemory: 256M\ncpus: 2\n"},
		{name: "unknown top-level key", yaml: "name: web\ncolour: red\n", wantErr: []string{"colour"}},
		{name: "unknown key in egress rule", yaml: "egress:\n  - host: api.example.com\n    ports: [443]\n    portz: [80]\n",
			wantErr: []string{"portz", "egress rule"}},
		{name: "unknown key in files mapping", yaml: "files:\n  - host: a.conf\n    guest: /etc/a.conf\n    mode: 0600\n",
			wantErr: []string{"mode", "file mapping"}},
		{name: "unknown key in dns", yaml: "dns:\n  upstream: 1.1.1.1:53\n  servers: []\n", wantErr: []string{"servers"}},
		{name: "cpus not a number", yaml: "cpus: many\n", wantErr: []string{"many"}},
		{name: "memory not a size", yaml: "memory: lots\n", wantErr: []string{"lots"}},
		{name: "memory as a list", yaml: "memory: [1, 2]\n", wantErr: []string{"size"}},
		{name: "args as a scalar", yaml: "args: --verbose\n", wantErr: []string{"--verbose"}},
		{name: "env as a scalar", yaml: "env: FOO=1\n", wantErr: []string{"env must be"}},
		{name: "env list of mappings", yaml: "env:\n  - {A: 1}\n", wantErr: []string{"KEY=VALUE"}},
		{name: "port as a mapping", yaml: "ports:\n  - {host: 80}\n", wantErr: []string{"port"}},
		{name: "bad port string", yaml: "ports: [\"80:x\"]\n", wantErr: []string{"80:x"}},
		{name: "egress rule as a string", yaml: "egress: [api.example.com]\n", wantErr: []string{"egress rule must be a mapping"}},
		{name: "two documents", yaml: "name: a\n---\nname: b\n", wantErr: []string{"more than one YAML document"}},
		{name: "document then garbage document", yaml: "name: a\n---\n[unclosed\n", wantErr: []string{"more than one YAML document"}},
		{name: "not yaml", yaml: "name: [unclosed\n", wantErr: []string{"yaml"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := spec.Parse([]byte(tt.yaml))
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("Parse() error = %v, want nil", err)
				}
				if s == nil {
					t.Fatal("Parse() = nil spec, want a spec")
				}
				return
			}
			if err == nil {
				t.Fatalf("Parse() = %+v, nil; want an error containing %q", s, tt.wantErr)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Parse() error = %q, want it to contain %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("Parse() error = %q, want one line", err)
			}
		})
	}
}

func TestParseFields(t *testing.T) {
	in := `
name: web
program: ./bin/web
args: ["--port", "80"]
cwd: /srv
memory: 256M
cpus: 2
tmp_size: 16M
capabilities: [net_bind_service]
ca_certs: false
hostname: webhost
files:
  - host: conf/web.conf
    guest: /etc/web.conf
  - "static/index.html:/srv/index.html"
dirs: ["assets:/srv/assets"]
ports: ["8080:80", "127.0.0.1:5353:53/udp"]
egress:
  - host: api.example.com
    ports: [443, "8000-8100"]
  - cidr: 10.0.0.0/8
    ports: [53]
    proto: udp
dns:
  upstream: 1.1.1.1:53
`
	s, err := spec.Parse([]byte(in))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	f := false
	want := &spec.Spec{
		Name: "web", Program: "./bin/web", Args: []string{"--port", "80"}, Cwd: "/srv",
		Memory: 256 << 20, CPUs: 2, TmpSize: 16 << 20, Capabilities: []string{"net_bind_service"},
		CACerts: &f, Hostname: "webhost",
		Files: []spec.Mount{{Host: "conf/web.conf", Guest: "/etc/web.conf"}, {Host: "static/index.html", Guest: "/srv/index.html"}},
		Dirs:  []spec.Mount{{Host: "assets", Guest: "/srv/assets"}},
		Ports: []spec.Port{
			{HostIP: "127.0.0.1", HostPort: 8080, GuestPort: 80, Proto: "tcp"},
			{HostIP: "127.0.0.1", HostPort: 5353, GuestPort: 53, Proto: "udp"},
		},
		Egress: []spec.EgressRule{
			{Host: "api.example.com", Ports: []spec.PortRange{{Lo: 443, Hi: 443}, {Lo: 8000, Hi: 8100}}},
			{CIDR: "10.0.0.0/8", Ports: []spec.PortRange{{Lo: 53, Hi: 53}}, Proto: "udp"},
		},
		DNS: spec.DNS{Upstream: "1.1.1.1:53"},
	}
	if !reflect.DeepEqual(s, want) {
		t.Errorf("Parse() =\n%+v\nwant\n%+v", s, want)
	}
}

func TestParseEnv(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want spec.EnvList
	}{
		{name: "list", yaml: "env:\n  - B=2\n  - A=x=y\n  - EMPTY=\n", want: spec.EnvList{"B=2", "A=x=y", "EMPTY="}},
		{name: "mapping keeps order", yaml: "env:\n  ZED: last\n  ALPHA: \"a b\"\n  MID: 3\n  URL: http://h/?a=b\n",
			want: spec.EnvList{"ZED=last", "ALPHA=a b", "MID=3", "URL=http://h/?a=b"}},
		{name: "values byte-exact", yaml: "env:\n  - \"K= a = b \"\n  - \"U=héllo wörld=☃\"\n",
			want: spec.EnvList{"K= a = b ", "U=héllo wörld=☃"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := spec.Parse([]byte(tt.yaml))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if !reflect.DeepEqual(s.Env, tt.want) {
				t.Errorf("Env = %q, want %q", s.Env, tt.want)
			}
		})
	}
}

// TestFlagEnvByteExact follows a `-e K=a=b` value from the flag layer
// (a Spec merged over the file's) through Normalize and Validate: nothing
// may split it at the second '=' or trim it.
func TestFlagEnvByteExact(t *testing.T) {
	values := []string{
		"K=a=b",
		"K=  spaced  out  ",
		"K=x==y=",
		"K=héllo wörld ☃ 日本",
		"K=",
		"K=$HOME 'quoted' \"double\" \\back",
	}
	for _, v := range values {
		t.Run(v, func(t *testing.T) {
			s := &spec.Spec{Program: "/bin/app"}
			s.Merge(&spec.Spec{Env: spec.EnvList{v}})
			s.Normalize()
			if err := s.Validate(); err != nil {
				t.Fatalf("Validate() = %v, want nil", err)
			}
			if len(s.Env) != 1 || s.Env[0] != v {
				t.Errorf("Env = %q, want [%q]", s.Env, v)
			}
		})
	}
}

func TestParseAllow(t *testing.T) {
	pr := func(lo, hi int) spec.PortRange { return spec.PortRange{Lo: lo, Hi: hi} }
	good := []struct {
		in   string
		want spec.EgressRule
	}{
		{"api.example.com:443", spec.EgressRule{Host: "api.example.com", Ports: []spec.PortRange{pr(443, 443)}, Proto: "tcp"}},
		{"api.example.com:443/tcp", spec.EgressRule{Host: "api.example.com", Ports: []spec.PortRange{pr(443, 443)}, Proto: "tcp"}},
		{"api.example.com:80,443,8000-8100/udp", spec.EgressRule{Host: "api.example.com",
			Ports: []spec.PortRange{pr(80, 80), pr(443, 443), pr(8000, 8100)}, Proto: "udp"}},
		{"*.example.com:443", spec.EgressRule{Host: "*.example.com", Ports: []spec.PortRange{pr(443, 443)}, Proto: "tcp"}},
		{"10.0.0.0/8:53/udp", spec.EgressRule{CIDR: "10.0.0.0/8", Ports: []spec.PortRange{pr(53, 53)}, Proto: "udp"}},
		{"10.0.0.0/8:53", spec.EgressRule{CIDR: "10.0.0.0/8", Ports: []spec.PortRange{pr(53, 53)}, Proto: "tcp"}},
		{"1.2.3.4:1-65535", spec.EgressRule{CIDR: "1.2.3.4/32", Ports: []spec.PortRange{pr(1, 65535)}, Proto: "tcp"}},
		{"[2001:db8::/32]:443", spec.EgressRule{CIDR: "2001:db8::/32", Ports: []spec.PortRange{pr(443, 443)}, Proto: "tcp"}},
		{"[2001:db8::1]:443/UDP", spec.EgressRule{CIDR: "2001:db8::1/128", Ports: []spec.PortRange{pr(443, 443)}, Proto: "udp"}},
	}
	for _, tt := range good {
		t.Run(tt.in, func(t *testing.T) {
			got, err := spec.ParseAllow(tt.in)
			if err != nil {
				t.Fatalf("ParseAllow(%q) error = %v, want nil", tt.in, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ParseAllow(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
		})
	}
	bad := []string{
		"api.example.com",       // no ports
		"api.example.com:",      // empty port
		"api.example.com:0",     // port 0
		"api.example.com:65536", // above range
		"api.example.com:x",     // not a number
		"api.example.com:90-80", // backwards range
		"api.example.com:443/icmp",
		":443",               // no destination
		"bad_host!:443",      // not a DNS name
		"10.0.0.1/8:443",     // host bits set
		"[2001:db8::1:443",   // unclosed bracket
		"[2001:db8::1]443",   // no colon after bracket
		"a..example.com:443", // empty label
	}
	for _, in := range bad {
		t.Run("bad/"+in, func(t *testing.T) {
			if got, err := spec.ParseAllow(in); err == nil {
				t.Errorf("ParseAllow(%q) = %+v, nil; want an error", in, got)
			} else if !strings.Contains(err.Error(), in) {
				t.Errorf("ParseAllow(%q) error = %q, want it to name the input", in, err)
			}
		})
	}
}

func TestParsePort(t *testing.T) {
	good := []struct {
		in   string
		want spec.Port
	}{
		{"8080", spec.Port{HostIP: "127.0.0.1", HostPort: 8080, GuestPort: 8080, Proto: "tcp"}},
		{"8080:80", spec.Port{HostIP: "127.0.0.1", HostPort: 8080, GuestPort: 80, Proto: "tcp"}},
		{"5353:53/udp", spec.Port{HostIP: "127.0.0.1", HostPort: 5353, GuestPort: 53, Proto: "udp"}},
		{"5353:53/UDP", spec.Port{HostIP: "127.0.0.1", HostPort: 5353, GuestPort: 53, Proto: "udp"}},
		{"0.0.0.0:8080:80/tcp", spec.Port{HostIP: "0.0.0.0", HostPort: 8080, GuestPort: 80, Proto: "tcp"}},
		{"[::1]:8080:80", spec.Port{HostIP: "::1", HostPort: 8080, GuestPort: 80, Proto: "tcp"}},
		{"[::]:1:65535/udp", spec.Port{HostIP: "::", HostPort: 1, GuestPort: 65535, Proto: "udp"}},
	}
	for _, tt := range good {
		t.Run(tt.in, func(t *testing.T) {
			got, err := spec.ParsePort(tt.in)
			if err != nil {
				t.Fatalf("ParsePort(%q) error = %v, want nil", tt.in, err)
			}
			if got != tt.want {
				t.Errorf("ParsePort(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
			// The canonical form parses back to the same forward.
			again, err := spec.ParsePort(got.String())
			if err != nil || again != got {
				t.Errorf("ParsePort(%q) = %+v, %v; want %+v (round trip)", got.String(), again, err, got)
			}
		})
	}
	bad := []string{"", "0", "65536", "80:x", "x:80", "80:0", "80:65536", "1:2:3:4", "8080:80/sctp",
		"localhost:8080:80", "[::1]8080:80", "[zz]:8080:80", "[::1]:1:2:3", "::1:8080:80", "-1"}
	for _, in := range bad {
		t.Run("bad/"+in, func(t *testing.T) {
			if got, err := spec.ParsePort(in); err == nil {
				t.Errorf("ParsePort(%q) = %+v, nil; want an error", in, got)
			}
		})
	}
}

func TestParseSize(t *testing.T) {
	good := []struct {
		in   string
		want spec.Size
	}{
		{"0", 0},
		{"100", 100},
		{"512K", 512 << 10},
		{"128M", 128 << 20},
		{"128m", 128 << 20},
		{"64MiB", 64 << 20},
		{"64MB", 64 << 20},
		{"64mb", 64 << 20},
		{"1G", 1 << 30},
		{"1T", 1 << 40},
		{" 2M ", 2 << 20},
	}
	for _, tt := range good {
		t.Run(tt.in, func(t *testing.T) {
			got, err := spec.ParseSize(tt.in)
			if err != nil {
				t.Fatalf("ParseSize(%q) error = %v, want nil", tt.in, err)
			}
			if got != tt.want {
				t.Errorf("ParseSize(%q) = %d, want %d", tt.in, got, tt.want)
			}
		})
	}
	bad := []string{"", "  ", "M", "-1M", "1.5G", "12X", "1KK", "0x10", "99999999999T", "9223372036854775807"}
	for _, in := range bad {
		t.Run("bad/"+in, func(t *testing.T) {
			if got, err := spec.ParseSize(in); err == nil {
				t.Errorf("ParseSize(%q) = %d, nil; want an error", in, got)
			}
		})
	}
}

func TestSizeString(t *testing.T) {
	tests := []struct {
		in   spec.Size
		want string
	}{
		{0, "0"}, {1, "1"}, {1536, "1536"}, {2048, "2K"}, {128 << 20, "128M"}, {3 << 30, "3G"}, {1 << 40, "1T"}, {(1 << 30) + (1 << 20), "1025M"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			if got := tt.in.String(); got != tt.want {
				t.Errorf("Size(%d).String() = %q, want %q", int64(tt.in), got, tt.want)
			}
			back, err := spec.ParseSize(tt.in.String())
			if err != nil || back != tt.in {
				t.Errorf("ParseSize(%q) = %d, %v; want %d", tt.in.String(), back, err, tt.in)
			}
		})
	}
}

func TestParsePortRange(t *testing.T) {
	good := []struct {
		in   string
		want spec.PortRange
		str  string
	}{
		{"443", spec.PortRange{Lo: 443, Hi: 443}, "443"},
		{"1", spec.PortRange{Lo: 1, Hi: 1}, "1"},
		{"65535", spec.PortRange{Lo: 65535, Hi: 65535}, "65535"},
		{"8000-8100", spec.PortRange{Lo: 8000, Hi: 8100}, "8000-8100"},
		{"80-80", spec.PortRange{Lo: 80, Hi: 80}, "80"},
		{" 80 - 90 ", spec.PortRange{Lo: 80, Hi: 90}, "80-90"},
	}
	for _, tt := range good {
		t.Run(tt.in, func(t *testing.T) {
			got, err := spec.ParsePortRange(tt.in)
			if err != nil {
				t.Fatalf("ParsePortRange(%q) error = %v, want nil", tt.in, err)
			}
			if got != tt.want {
				t.Errorf("ParsePortRange(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
			if got.String() != tt.str {
				t.Errorf("ParsePortRange(%q).String() = %q, want %q", tt.in, got.String(), tt.str)
			}
		})
	}
	for _, in := range []string{"", "0", "65536", "90-80", "80-", "-80", "x", "80:x", "1-2-3", "0-10"} {
		t.Run("bad/"+in, func(t *testing.T) {
			if got, err := spec.ParsePortRange(in); err == nil {
				t.Errorf("ParsePortRange(%q) = %+v, nil; want an error", in, got)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name      string
		mutate    func(t *testing.T, s *spec.Spec) // applied before Normalize
		wantField string
		wantValue string
	}{
		{"no program", func(t *testing.T, s *spec.Spec) { s.Program = "" }, "program", ""},
		{"bad name", func(t *testing.T, s *spec.Spec) { s.Name = "Bad_Name" }, "name", "Bad_Name"},
		{"name starting with a dot", func(t *testing.T, s *spec.Spec) { s.Name = ".web" }, "name", ".web"},
		{"bad hostname", func(t *testing.T, s *spec.Spec) { s.Hostname = "web_host" }, "hostname", "web_host"},
		{"env without =", func(t *testing.T, s *spec.Spec) { s.Env = spec.EnvList{"A=1", "NOVALUE"} }, "env[1]", "NOVALUE"},
		{"env bad key", func(t *testing.T, s *spec.Spec) { s.Env = spec.EnvList{"1X=y"} }, "env[0]", "1X=y"},
		{"env NUL", func(t *testing.T, s *spec.Spec) { s.Env = spec.EnvList{"A=x\x00y"} }, "env[0]", "A=x\x00y"},
		{"arg NUL", func(t *testing.T, s *spec.Spec) { s.Args = []string{"ok", "a\x00b"} }, "args[1]", "a\x00b"},
		{"relative cwd", func(t *testing.T, s *spec.Spec) { s.Cwd = "srv" }, "cwd", "srv"},
		{"relative guest path", func(t *testing.T, s *spec.Spec) {
			s.Files = []spec.Mount{{Host: "a.conf", Guest: "/etc/a.conf"}, {Host: "b.conf", Guest: "etc/b.conf"}}
		}, "files[1].guest", "etc/b.conf"},
		{"dotdot guest path", func(t *testing.T, s *spec.Spec) {
			s.Dirs = []spec.Mount{{Host: "static", Guest: "/srv/../etc"}}
		}, "dirs[0].guest", "/srv/../etc"},
		{"guest root", func(t *testing.T, s *spec.Spec) { s.Dirs = []spec.Mount{{Host: "rootfs", Guest: "//"}} }, "dirs[0].guest", "//"},
		{"missing host", func(t *testing.T, s *spec.Spec) { s.Files = []spec.Mount{{Guest: "/x"}} }, "files[0].host", ""},
		{"memory too small", func(t *testing.T, s *spec.Spec) { s.Memory = 16 << 20; s.TmpSize = 1 << 20 }, "memory", "16M"},
		{"memory too large", func(t *testing.T, s *spec.Spec) { s.Memory = 2 << 40 }, "memory", "2T"},
		{"too many cpus", func(t *testing.T, s *spec.Spec) { s.CPUs = 65 }, "cpus", "65"},
		{"negative cpus", func(t *testing.T, s *spec.Spec) { s.CPUs = -1 }, "cpus", "-1"},
		{"tmp_size equals memory", func(t *testing.T, s *spec.Spec) { s.Memory = 64 << 20; s.TmpSize = 64 << 20 }, "tmp_size", "64M"},
		{"tmp_size above memory", func(t *testing.T, s *spec.Spec) { s.Memory = 64 << 20; s.TmpSize = 1 << 30 }, "tmp_size", "1G"},
		{"tmp_size tiny", func(t *testing.T, s *spec.Spec) { s.TmpSize = 4096 }, "tmp_size", "4K"},
		{"unknown capability", func(t *testing.T, s *spec.Spec) { s.Capabilities = []string{"FLY"} }, "capabilities[0]", "FLY"},
		{"forbidden capability", func(t *testing.T, s *spec.Spec) { s.Capabilities = []string{"cap_sys_admin"} }, "capabilities[0]", "SYS_ADMIN"},
		{"forbidden capability after allowed", func(t *testing.T, s *spec.Spec) {
			s.Capabilities = []string{"NET_BIND_SERVICE", "SYS_MODULE"}
		}, "capabilities[1]", "SYS_MODULE"},
		{"duplicate host port", func(t *testing.T, s *spec.Spec) {
			s.Ports = []spec.Port{mustParsePort(t, "8080:80"), mustParsePort(t, "9090:90"), mustParsePort(t, "8080:81")}
		}, "ports[2]", "127.0.0.1:8080:81/tcp"},
		{"hand-built port", func(t *testing.T, s *spec.Spec) {
			s.Ports = []spec.Port{{HostIP: "127.0.0.1", HostPort: 0, GuestPort: 80, Proto: "tcp"}}
		}, "ports[0]", "127.0.0.1:0:80/tcp"},
		{"egress without ports", func(t *testing.T, s *spec.Spec) {
			s.Egress = []spec.EgressRule{{Host: "api.example.com"}}
		}, "egress[0]", "api.example.com:/tcp"},
		{"egress host and cidr", func(t *testing.T, s *spec.Spec) {
			s.Egress = []spec.EgressRule{{Host: "a.example", CIDR: "10.0.0.0/8", Ports: []spec.PortRange{{Lo: 1, Hi: 1}}}}
		}, "egress[0]", "a.example:1/tcp"},
		{"dns upstream", func(t *testing.T, s *spec.Spec) { s.DNS.Upstream = "dns.example:53" }, "dns.upstream", "dns.example:53"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &spec.Spec{Name: "web", Program: "/srv/web"}
			tt.mutate(t, s)
			s.Normalize()
			err := s.Validate()
			var se *spec.Error
			if !errors.As(err, &se) {
				t.Fatalf("Validate() = %v, want a *spec.Error for %s", err, tt.wantField)
			}
			if se.Field != tt.wantField || se.Value != tt.wantValue {
				t.Errorf("Validate() error field/value = %q/%q, want %q/%q (%v)", se.Field, se.Value, tt.wantField, tt.wantValue, err)
			}
			if !strings.HasPrefix(err.Error(), tt.wantField) {
				t.Errorf("Validate() error = %q, want it to start with the field %q", err, tt.wantField)
			}
			if tt.wantValue != "" && !strings.Contains(err.Error(), tt.wantValue) && !strings.ContainsRune(tt.wantValue, 0) {
				t.Errorf("Validate() error = %q, want it to name the value %q", err, tt.wantValue)
			}
		})
	}
}

func TestValidateAccepts(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(t *testing.T, s *spec.Spec)
	}{
		{"same host port, other protocol", func(t *testing.T, s *spec.Spec) {
			s.Ports = []spec.Port{mustParsePort(t, "8080:80"), mustParsePort(t, "8080:80/udp")}
		}},
		{"same host port, other address", func(t *testing.T, s *spec.Spec) {
			s.Ports = []spec.Port{mustParsePort(t, "8080:80"), mustParsePort(t, "0.0.0.0:8080:80"), mustParsePort(t, "[::1]:8080:80")}
		}},
		{"allowed capability in lower case", func(t *testing.T, s *spec.Spec) { s.Capabilities = []string{"cap_net_bind_service"} }},
		{"memory at the minimum", func(t *testing.T, s *spec.Spec) { s.Memory = spec.MinMemory; s.TmpSize = 1 << 20 }},
		{"egress by address", func(t *testing.T, s *spec.Spec) {
			s.Egress = []spec.EgressRule{{CIDR: "192.0.2.7", Ports: []spec.PortRange{{Lo: 443, Hi: 443}}}}
		}},
		{"dns upstream without port", func(t *testing.T, s *spec.Spec) { s.DNS.Upstream = "9.9.9.9" }},
		{"guest path with trailing slash", func(t *testing.T, s *spec.Spec) { s.Dirs = []spec.Mount{{Host: "d", Guest: "/srv/"}} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &spec.Spec{Name: "web", Program: "/srv/web"}
			tt.mutate(t, s)
			s.Normalize()
			if err := s.Validate(); err != nil {
				t.Errorf("Validate() = %v, want nil", err)
			}
		})
	}
}

func TestValidateCanonicalisesEgress(t *testing.T) {
	s := validSpec(t)
	s.Egress = []spec.EgressRule{{CIDR: "192.0.2.7", Proto: "UDP", Ports: []spec.PortRange{{Lo: 53, Hi: 53}}}}
	if err := s.Validate(); err != nil {
		t.Fatalf("Validate() = %v, want nil", err)
	}
	if got, want := s.Egress[0], (spec.EgressRule{CIDR: "192.0.2.7/32", Proto: "udp", Ports: []spec.PortRange{{Lo: 53, Hi: 53}}}); !reflect.DeepEqual(got, want) {
		t.Errorf("Egress[0] after Validate = %+v, want %+v", got, want)
	}
}

func TestMerge(t *testing.T) {
	file, err := spec.Parse([]byte(`
name: web
program: ./web
args: [--from-file]
env: [A=1, B=old, C=3]
memory: 256M
cpus: 2
capabilities: [NET_BIND_SERVICE]
ports: ["8080:80"]
files: ["a:/a"]
egress:
  - host: api.example.com
    ports: [443]
`))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	off := false
	flags := &spec.Spec{
		Memory:       512 << 20,
		Env:          spec.EnvList{"B=new=value", "D=4"},
		Capabilities: []string{"NET_RAW"},
		Ports:        []spec.Port{mustParsePort(t, "9090:90")},
		Files:        []spec.Mount{{Host: "b", Guest: "/b"}},
		CACerts:      &off,
		Hostname:     "flaghost",
	}
	file.Merge(flags)

	if got, want := file.Memory, spec.Size(512<<20); got != want {
		t.Errorf("Memory = %v, want %v (flag wins)", got, want)
	}
	if got, want := file.CPUs, 2; got != want {
		t.Errorf("CPUs = %d, want %d (unset flag keeps the file's)", got, want)
	}
	if got, want := file.Name, "web"; got != want {
		t.Errorf("Name = %q, want %q", got, want)
	}
	if got, want := file.Args, []string{"--from-file"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Args = %q, want %q (nil flag args keep the file's)", got, want)
	}
	if got, want := []string(file.Env), []string{"A=1", "B=new=value", "C=3", "D=4"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Env = %q, want %q (same key replaced in place, new appended)", got, want)
	}
	if got, want := file.Capabilities, []string{"NET_RAW"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Capabilities = %q, want %q (flags replace)", got, want)
	}
	if got, want := len(file.Ports), 2; got != want {
		t.Errorf("len(Ports) = %d, want %d (flags extend)", got, want)
	}
	if got, want := file.Files, []spec.Mount{{Host: "a", Guest: "/a"}, {Host: "b", Guest: "/b"}}; !reflect.DeepEqual(got, want) {
		t.Errorf("Files = %+v, want %+v", got, want)
	}
	if got, want := len(file.Egress), 1; got != want {
		t.Errorf("len(Egress) = %d, want %d", got, want)
	}
	if file.WantCACerts() {
		t.Errorf("WantCACerts() = true, want false (ca_certs flag false)")
	}
	if got, want := file.Hostname, "flaghost"; got != want {
		t.Errorf("Hostname = %q, want %q", got, want)
	}

	// Empty flag args given explicitly replace the file's.
	file.Merge(&spec.Spec{Args: []string{}})
	if len(file.Args) != 0 {
		t.Errorf("Args after merging empty flag args = %q, want none", file.Args)
	}
}

func TestNormalize(t *testing.T) {
	s := &spec.Spec{Program: "/opt/bin/My Server", Capabilities: []string{"net_raw", "CAP_NET_BIND_SERVICE", "cap_chown"}}
	s.Normalize()
	checks := []struct {
		name      string
		got, want any
	}{
		{"Name", s.Name, "my-server"},
		{"Hostname", s.Hostname, "my-server"},
		{"Memory", s.Memory, spec.DefaultMemory},
		{"CPUs", s.CPUs, spec.DefaultCPUs},
		{"TmpSize", s.TmpSize, spec.DefaultTmpSize},
		{"Cwd", s.Cwd, "/"},
		{"Sysroot", s.Sysroot, "/"},
		{"WantCACerts", s.WantCACerts(), true},
		{"CACerts set", s.CACerts != nil, true},
		{"Capabilities", s.Capabilities, []string{"CHOWN", "NET_BIND_SERVICE", "NET_RAW"}},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}

	// A name that is not a DNS label still gives a valid hostname.
	py := &spec.Spec{Program: "/usr/bin/python3.11"}
	py.Normalize()
	if py.Name != "python3.11" || py.Hostname != "python3-11" {
		t.Errorf("Normalize(python3.11) name/hostname = %q/%q, want python3.11/python3-11", py.Name, py.Hostname)
	}
	if err := py.Validate(); err != nil {
		t.Errorf("Validate after Normalize(python3.11) = %v, want nil", err)
	}

	// Explicit values survive.
	off := false
	k := &spec.Spec{Name: "n", Program: "/p", Hostname: "h", Memory: 1 << 30, CPUs: 4, TmpSize: 8 << 20, Cwd: "/srv", Sysroot: "/r", CACerts: &off}
	want := *k
	k.Normalize()
	if !reflect.DeepEqual(*k, want) {
		t.Errorf("Normalize changed explicit fields: got %+v, want %+v", *k, want)
	}
}

func TestNameFromProgram(t *testing.T) {
	tests := []struct{ in, want string }{
		{"/usr/bin/Python3.11", "python3.11"},
		{"./server", "server"},
		{"/x/_hidden", "hidden"},
		{"/x/my app+v2", "my-app-v2"},
		{"/x/!!!", "app"},
		{"/x/héllo", "h-llo"},
		{"/x/" + strings.Repeat("a", 100), strings.Repeat("a", 63)},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := spec.NameFromProgram(tt.in); got != tt.want {
				t.Errorf("NameFromProgram(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestLoadRelativePaths(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "hull.yaml")
	body := `program: ./bin/web
files:
  - host: conf/web.conf
    guest: /etc/web.conf
  - host: /etc/absolute.conf
    guest: /etc/absolute.conf
dirs: ["static:/srv"]
sysroot: root
`
	if err := os.WriteFile(file, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := spec.Load(file)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	checks := []struct{ name, got, want string }{
		{"Program", s.Program, filepath.Join(dir, "bin/web")},
		{"Files[0].Host", s.Files[0].Host, filepath.Join(dir, "conf/web.conf")},
		{"Files[0].Guest", s.Files[0].Guest, "/etc/web.conf"},
		{"Files[1].Host", s.Files[1].Host, "/etc/absolute.conf"},
		{"Dirs[0].Host", s.Dirs[0].Host, filepath.Join(dir, "static")},
		{"Dirs[0].Guest", s.Dirs[0].Guest, "/srv"},
		{"Sysroot", s.Sysroot, filepath.Join(dir, "root")},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.name, c.got, c.want)
		}
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.yaml")
	if _, err := spec.Load(missing); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load(missing) error = %v, want os.ErrNotExist", err)
	}
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("program: ./x\nbogus: 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := spec.Load(bad)
	if err == nil || !strings.HasPrefix(err.Error(), bad+": ") || !strings.Contains(err.Error(), "bogus") {
		t.Errorf("Load(bad) error = %v, want it to start with %q and name key bogus", err, bad+": ")
	}
}

func TestErrorString(t *testing.T) {
	tests := []struct {
		err  spec.Error
		want string
	}{
		{spec.Error{Field: "memory", Value: "16M", Reason: "too small"}, `memory "16M": too small`},
		{spec.Error{Source: "hull.yaml", Field: "program", Reason: "missing"}, `hull.yaml: program: missing`},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
}
