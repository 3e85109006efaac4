package qemu

import "testing"

func TestTSCkHzPlausible(t *testing.T) {
	k := TSCkHz()
	if k < 100_000 || k > 10_000_000 {
		t.Fatalf("TSCkHz() = %d kHz, want between 100 MHz and 10 GHz", k)
	}
	t.Logf("host TSC: %d kHz", k)
}
