package manifest_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/hullvm/hull/internal/manifest"
)

func TestMergeEnv(t *testing.T) {
	tests := []struct {
		name       string
		base, over []string
		want       []string
	}{
		{"no override", []string{"A=1"}, nil, []string{"A=1"}},
		{"replace in place", []string{"A=1", "B=2", "C=3"}, []string{"B=two"}, []string{"A=1", "B=two", "C=3"}},
		{"append new in order", []string{"A=1"}, []string{"Z=26", "M=13"}, []string{"A=1", "Z=26", "M=13"}},
		{"value with = kept whole", []string{"K=old"}, []string{"K=a=b c"}, []string{"K=a=b c"}},
		{"later override wins", []string{"A=1"}, []string{"A=2", "A=3"}, []string{"A=3"}},
		{"new key set twice", nil, []string{"N=1", "N=2"}, []string{"N=2"}},
		{"key prefix is another key", []string{"PATH=/bin"}, []string{"PATHX=1"}, []string{"PATH=/bin", "PATHX=1"}},
		{"empty value", []string{"A=1"}, []string{"A="}, []string{"A="}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := append([]string(nil), tt.base...)
			got := manifest.MergeEnv(base, tt.over)
			if !reflect.DeepEqual(got, tt.want) && !(len(got) == 0 && len(tt.want) == 0) {
				t.Errorf("MergeEnv(%q, %q) = %q, want %q", tt.base, tt.over, got, tt.want)
			}
			if !reflect.DeepEqual(base, tt.base) && !(len(base) == 0 && len(tt.base) == 0) {
				t.Errorf("MergeEnv modified its base: %q, was %q", base, tt.base)
			}
		})
	}
}

func TestMarshalRoundTrip(t *testing.T) {
	m := &manifest.Manifest{
		Version: manifest.Version, Name: "web", Program: "/app/web", Args: []string{"-v"},
		Env: []string{"A=1"}, Cwd: "/", Hostname: "web",
		User:         manifest.User{Name: manifest.AppUser, UID: manifest.AppUID, GID: manifest.AppGID, Home: manifest.AppHome},
		Capabilities: []string{"NET_BIND_SERVICE"}, TmpSize: 64 << 20, NoFile: manifest.DefaultNoFile,
		Files: []manifest.File{{Path: "/etc/hosts", Type: "file", Mode: 0o644, Size: 3, SHA256: "ab", Reason: "declared", Overrides: "generated: hosts"}},
	}
	b, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	again, err := m.Marshal()
	if err != nil || string(again) != string(b) {
		t.Errorf("Marshal is not stable: %v", err)
	}
	if !strings.HasSuffix(string(b), "}\n") {
		t.Errorf("Marshal output does not end in a newline")
	}
	got, err := manifest.Unmarshal(b)
	if err != nil {
		t.Fatalf("Unmarshal: %v", err)
	}
	if !reflect.DeepEqual(got, m) {
		t.Errorf("Unmarshal(Marshal(m)) =\n%+v\nwant\n%+v", got, m)
	}
}

func TestUnmarshalRejects(t *testing.T) {
	tests := []struct{ name, json, want string }{
		{"not json", "{", "decoding"},
		{"old version", `{"version":0,"program":"/app/x"}`, "rebuild"},
		{"future version", `{"version":99,"program":"/app/x"}`, "99"},
		{"no program", `{"version":1}`, "program"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := manifest.Unmarshal([]byte(tt.json)); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Unmarshal(%s) = %v, want an error mentioning %q", tt.json, err, tt.want)
			}
		})
	}
}

func TestCapabilityTables(t *testing.T) {
	byNumber := map[int]string{}
	for name, n := range manifest.Capabilities {
		if other, dup := byNumber[n]; dup {
			t.Errorf("capability number %d named twice: %s and %s", n, other, name)
		}
		byNumber[n] = name
		if strings.HasPrefix(name, "CAP_") || strings.ToUpper(name) != name {
			t.Errorf("capability %q: want upper case without CAP_ (spec.Normalize writes that form)", name)
		}
	}
	for n := 0; n < len(byNumber); n++ {
		if _, ok := byNumber[n]; !ok {
			t.Errorf("capability numbers skip %d", n)
		}
	}
	for name := range manifest.Forbidden {
		if _, ok := manifest.Capabilities[name]; !ok {
			t.Errorf("Forbidden names %s, which is not a capability: the check could never fire", name)
		}
	}
	for _, c := range []string{"SYS_ADMIN", "SYS_MODULE", "SYS_PTRACE", "SETUID", "NET_ADMIN", "BPF"} {
		if !manifest.Forbidden[c] {
			t.Errorf("%s is not forbidden; it would undo the lockdown", c)
		}
	}
	if manifest.Forbidden["NET_BIND_SERVICE"] {
		t.Errorf("NET_BIND_SERVICE is forbidden; apps binding low ports need it")
	}
}
