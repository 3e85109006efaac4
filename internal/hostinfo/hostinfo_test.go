package hostinfo

import (
	"runtime"
	"testing"
)

func TestCPUModel(t *testing.T) {
	info := "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\nflags\t: fpu\n\nprocessor\t: 1\nmodel name\t: other\n"
	if got := cpuModel(info); got != "AMD EPYC 7B13" {
		t.Errorf("cpuModel = %q, want the first model name", got)
	}
	if got := cpuModel("processor\t: 0\n"); got != runtime.GOARCH {
		t.Errorf("cpuModel without a model name = %q, want %s", got, runtime.GOARCH)
	}
}
