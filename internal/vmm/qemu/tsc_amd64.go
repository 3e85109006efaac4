package qemu

import (
	"sort"
	"time"
)

func rdtsc() uint64

// TSCkHz measures the host's TSC rate. Under TCG the guest's TSC runs at
// the host's rate, and passing it as tsc_early_khz spares the kernel a
// calibration against the emulated PIT that fails at random and hangs
// the boot.
func TSCkHz() int64 {
	var samples []int64
	for i := 0; i < 5; i++ {
		t0, c0 := time.Now(), rdtsc()
		time.Sleep(4 * time.Millisecond)
		t1, c1 := time.Now(), rdtsc()
		ns := t1.Sub(t0).Nanoseconds()
		if ns <= 0 || c1 <= c0 {
			continue
		}
		samples = append(samples, int64(float64(c1-c0)/float64(ns)*1e6))
	}
	if len(samples) == 0 {
		return 0
	}
	sort.Slice(samples, func(i, j int) bool { return samples[i] < samples[j] })
	return samples[len(samples)/2]
}
