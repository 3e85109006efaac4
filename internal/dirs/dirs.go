// Package dirs says where hull keeps its state: images and kernels under
// the XDG data directory, per-instance sockets and logs under the runtime
// directory. HULL_HOME overrides the data directory (tests use it to stay
// out of the user's store). Nothing here creates directories.
package dirs

import (
	"fmt"
	"os"
	"path/filepath"
)

// Data is the root of hull's persistent state.
func Data() (string, error) {
	if d := os.Getenv("HULL_HOME"); d != "" {
		return filepath.Abs(d)
	}
	if d := os.Getenv("XDG_DATA_HOME"); d != "" && filepath.IsAbs(d) {
		return filepath.Join(d, "hull"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("finding the data directory: %w (set HULL_HOME)", err)
	}
	return filepath.Join(home, ".local", "share", "hull"), nil
}

// Images is where the image store lives.
func Images(data string) string { return filepath.Join(data, "images") }

// Kernels is where kernel bundles live.
func Kernels(data string) string { return filepath.Join(data, "kernels") }

// Runtime is the parent of per-instance directories: sockets, logs. It
// prefers XDG_RUNTIME_DIR (per-user tmpfs) and falls back to a
// per-user directory under the system temp dir.
func Runtime() string {
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" && filepath.IsAbs(d) {
		return filepath.Join(d, "hull")
	}
	return filepath.Join(os.TempDir(), fmt.Sprintf("hull-%d", os.Getuid()))
}

// State is where hull keeps logs worth keeping after a run (flow logs):
// XDG_STATE_HOME/hull, else ~/.local/state/hull, else under the data dir.
func State() string {
	if d := os.Getenv("HULL_HOME"); d != "" {
		return filepath.Join(d, "state")
	}
	if d := os.Getenv("XDG_STATE_HOME"); d != "" && filepath.IsAbs(d) {
		return filepath.Join(d, "hull")
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".local", "state", "hull")
	}
	return filepath.Join(os.TempDir(), fmt.Sprintf("hull-state-%d", os.Getuid()))
}
