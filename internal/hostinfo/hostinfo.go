// Package hostinfo describes the machine hull's benchmarks and
// comparisons ran on, for the header of what they print: numbers under
// emulation mean little without the CPU they came from.
package hostinfo

import (
	"os"
	"runtime"
	"strings"
)

// CPUModel is the first "model name" of /proc/cpuinfo, or the
// architecture when there is none.
func CPUModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	return cpuModel(string(b))
}

func cpuModel(cpuinfo string) string {
	for _, line := range strings.Split(cpuinfo, "\n") {
		if strings.HasPrefix(line, "model name") {
			if _, v, ok := strings.Cut(line, ":"); ok {
				return strings.TrimSpace(v)
			}
		}
	}
	return runtime.GOARCH
}
