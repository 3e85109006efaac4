package e2e

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

type attempt struct {
	Attempt string `json:"attempt"`
	OK      bool   `json:"ok"`
	Errno   string `json:"errno"`
	Detail  string `json:"detail"`
}

func parseAttempts(t *testing.T, out string) map[string]attempt {
	t.Helper()
	got := map[string]attempt{}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if !strings.HasPrefix(line, "{") {
			continue
		}
		var a attempt
		if err := json.Unmarshal([]byte(line), &a); err != nil {
			t.Fatalf("bad probe line %q: %v", line, err)
		}
		if prev, dup := got[a.Attempt]; dup && a.Attempt == "exec_direct" && prev.OK {
			continue
		}
		got[a.Attempt] = a
	}
	return got
}

// The attempts the red-team program makes in the guest. Every one must
// be present in its output (a crash must not pass as "nothing worked").
var redTeamAttempts = []string{
	"exec_bin_sh", "exec_dropped_binary", "fork", "clone_process", "vfork",
	"dup_to_exec_fd", "raise_nofile_limit", "execveat_own_binary",
	"ptrace_pid1", "ptrace_traceme", "finit_module", "mount_tmpfs", "remount_root_rw",
	"chroot", "unshare_userns", "setuid_root", "write_root", "write_own_binary",
	"write_etc_passwd", "read_pid1_environ", "read_hull_manifest", "open_dev_mem",
	"open_dev_kmsg", "kill_pid1", "raw_socket", "packet_socket", "mknod_device",
	"memfd_create", "io_uring_setup", "bpf", "userfaultfd", "keyctl", "perf_event_open",
	"reboot", "sethostname", "sysrq_trigger", "mmap_exec_from_tmp", "hold_capabilities",
	"egress_tcp_testnet", "egress_udp_dns_testnet", "egress_metadata",
	"egress_host_loopback_ssh", "dns_lookup_undeclared", "exec_direct", "done",
}

// Every attack from inside the guest fails, the VM stays up to report
// them all, and the exec and fork attempts are reported to the user.
func TestRedTeamInGuest(t *testing.T) {
	requireVM(t)
	t.Parallel()
	vmSlot(t)
	bin := goBuild(t, "./test/e2e/testdata/redteam", false)
	flowLog := filepath.Join(t.TempDir(), "flows.jsonl")
	r := hull(t, "run", bin, "--flow-log", flowLog)
	if r.code != 0 {
		t.Errorf("exit = %d, want 0 (the probe survives every refusal); stderr:\n%s", r.code, r.stderr)
	}
	got := parseAttempts(t, r.stdout)
	var missing []string
	for _, name := range redTeamAttempts {
		a, ok := got[name]
		if !ok {
			missing = append(missing, name)
			continue
		}
		if a.OK {
			t.Errorf("attack %s SUCCEEDED in the guest (%s)", name, a.Detail)
		} else {
			t.Logf("%-26s refused: %s %s", name, a.Errno, a.Detail)
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		t.Errorf("attempts missing from the probe's output (crashed?): %v\nstdout:\n%s\nstderr:\n%s", missing, r.stdout, r.stderr)
	}
	// The egress attempts failed at the gateway, which logged each.
	log, _ := os.ReadFile(flowLog)
	for _, want := range []string{`"remote":"192.0.2.1:80","verdict":"deny"`, `"remote":"169.254.169.254:80","verdict":"deny"`,
		`"remote":"192.0.2.1:53","verdict":"deny"`, `"name":"example.com","dns":true,"verdict":"deny"`} {
		if !strings.Contains(string(log), want) {
			t.Errorf("flow log lacks %s:\n%s", want, log)
		}
	}
	// Refusals a user should hear about are reported by name (C6).
	for _, want := range []string{"called execve(\"/tmp/dropped\")", "called clone", "called fork", "called ptrace", "called finit_module", "called mount"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr does not report %q; stderr:\n%s", want, r.stderr)
		}
	}
}

// The same probe, restricted to its harmless attempts, succeeds on the
// host: it can tell success from failure, so the guest result means
// something.
func TestRedTeamProbeDetectsSuccessOnHost(t *testing.T) {
	bin := goBuild(t, "./test/e2e/testdata/redteam", false)
	if _, err := os.Stat("/bin/true"); err != nil {
		t.Skip("no /bin/true on this host")
	}
	out, err := exec.Command(bin, "-harmless", "-tmp", t.TempDir()).Output()
	if err != nil {
		t.Fatalf("harmless probe: %v", err)
	}
	got := parseAttempts(t, string(out))
	for _, name := range []string{"exec_bin_true", "exec_dropped_binary", "fork"} {
		if a, ok := got[name]; !ok || !a.OK {
			t.Errorf("%s on the host: got %+v, want success", name, a)
		}
	}
}

func isCI() bool { return os.Getenv("CI") == "true" }
