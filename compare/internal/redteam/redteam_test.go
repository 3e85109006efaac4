package redteam

import (
	"reflect"
	"testing"
)

// A run as the red-team program prints it in a hull guest: every attempt
// refused, then "done".
const hullRun = `{"attempt":"exec_bin_sh","ok":false,"errno":"EPERM","detail":"fork/exec /bin/sh: operation not permitted"}
{"attempt":"fork","ok":false,"errno":"EPERM"}
{"attempt":"setuid_root","ok":false,"errno":"EPERM"}
{"attempt":"reboot","ok":false,"errno":"EPERM"}
{"attempt":"sysrq_trigger","ok":false,"errno":"ENOENT"}
{"attempt":"exec_direct","ok":false,"errno":"EPERM"}
{"attempt":"done","ok":false}
`

func TestParse(t *testing.T) {
	// A traditional VM's console: kernel lines, CRLF, an attempt after
	// console noise on the same line, a broken line, and exec_direct
	// reported twice (by the replaced program, then never by the probe).
	console := "[    1.234] virtio_net virtio2 eth0: renamed\r\n" +
		`{"attempt":"exec_bin_sh","ok":true}` + "\r\n" +
		`[    3.1] audit: {"attempt":"fork","ok":true}` + "\r\n" +
		`{"attempt":"setuid_root","ok":fa` + "\r\n" +
		`{"attempt":"exec_direct","ok":false,"errno":"EACCES"}` + "\r\n" +
		`{"attempt":"exec_direct","ok":true,"detail":"a dropped binary ran"}` + "\r\n" +
		`{"attempt":"","ok":true}` + "\r\n" +
		"compare: redteam end redis\r\n"
	got := Parse(console)
	want := []Attempt{
		{Name: "exec_bin_sh", OK: true},
		{Name: "fork", OK: true},
		{Name: "exec_direct", OK: true, Detail: "a dropped binary ran"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Parse =\n%+v\nwant\n%+v", got, want)
	}
	if Finished(got) {
		t.Errorf("Finished = true for a run without the done line")
	}
	if all := Parse(hullRun); !Finished(all) || len(all) != 7 {
		t.Errorf("Parse(hull run) = %d attempts, finished %v; want 7, true", len(all), Finished(all))
	}
}

func TestNames(t *testing.T) {
	got := Names(Parse(hullRun))
	want := []string{"exec_bin_sh", "fork", "setuid_root", "reboot", "sysrq_trigger", "exec_direct"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Names = %v, want %v (in order, without done)", got, want)
	}
}

func TestCount(t *testing.T) {
	ref := Names(Parse(hullRun))
	a := func(name string, ok bool) Attempt { return Attempt{Name: name, OK: ok} }
	tests := []struct {
		name   string
		got    []Attempt
		vmDown bool
		want   Tally
	}{
		{
			name: "hull: everything refused",
			got:  Parse(hullRun),
			want: Tally{Attempts: 6, Refused: ref},
		},
		{
			name: "service user: some succeed, the final exec replaces the program",
			got:  []Attempt{a("exec_bin_sh", true), a("fork", true), a("setuid_root", false), a("reboot", false), a("sysrq_trigger", false), a("exec_direct", true)},
			want: Tally{Attempts: 6, Succeeded: []string{"exec_bin_sh", "fork", "exec_direct"}, Refused: []string{"setuid_root", "reboot", "sysrq_trigger"}},
		},
		{
			// reboot worked: the VM went down before reboot was reported.
			name:   "root: the VM goes down",
			got:    []Attempt{a("exec_bin_sh", true), a("fork", true), a("setuid_root", true)},
			vmDown: true,
			want: Tally{Attempts: 6, Succeeded: []string{"exec_bin_sh", "fork", "setuid_root", "reboot"},
				NotReached: []string{"sysrq_trigger", "exec_direct"}, DownAt: "reboot"},
		},
		{
			// The program stopped without the VM going down: what it did
			// not report is neither refused nor succeeded.
			name: "the program crashed",
			got:  []Attempt{a("exec_bin_sh", true), a("setuid_root", false)},
			want: Tally{Attempts: 6, Succeeded: []string{"exec_bin_sh"}, Refused: []string{"setuid_root"},
				Unreported: []string{"fork", "reboot", "sysrq_trigger", "exec_direct"}},
		},
		{
			// Skipped before the last reported attempt: not the one that
			// took the VM down.
			name:   "VM down, with a gap before the last report",
			got:    []Attempt{a("exec_bin_sh", false), a("setuid_root", true)},
			vmDown: true,
			want: Tally{Attempts: 6, Succeeded: []string{"setuid_root", "reboot"}, Refused: []string{"exec_bin_sh"},
				NotReached: []string{"sysrq_trigger", "exec_direct"}, Unreported: []string{"fork"}, DownAt: "reboot"},
		},
		{
			name: "attempts the reference lacks are listed, not counted",
			got:  append(Parse(hullRun), a("new_trick", true)),
			want: Tally{Attempts: 6, Refused: ref, Extra: []string{"new_trick"}},
		},
		{
			name:   "nothing reported before the VM went down",
			vmDown: true,
			want:   Tally{Attempts: 6, Succeeded: []string{"exec_bin_sh"}, NotReached: ref[1:], DownAt: "exec_bin_sh"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Count(ref, tt.got, tt.vmDown)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Count =\n%+v\nwant\n%+v", got, tt.want)
			}
		})
	}
}
