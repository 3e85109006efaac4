package traditional

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// PayloadDir is where the comparison's own test programs go in the root.
// The surface scan leaves it out: it is not part of the server.
const PayloadDir = "/opt/compare"

// InitPath is the root's PID 1 script.
const InitPath = "/sbin/init"

// PrepareRoot writes the init script and the payload programs (name →
// host path) into the root, replacing earlier ones.
func PrepareRoot(root *Root, payloads map[string]string) error {
	if err := os.WriteFile(filepath.Join(root.Dir, InitPath), []byte(initScript), 0o755); err != nil {
		return fmt.Errorf("writing the init script: %w", err)
	}
	dir := filepath.Join(root.Dir, PayloadDir)
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for name, src := range payloads {
		if err := copyFile(src, filepath.Join(dir, name), 0o755); err != nil {
			return fmt.Errorf("copying %s into the traditional root: %w", name, err)
		}
	}
	return nil
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// MakeDisk writes an ext4 image of the root to img with mkfs.ext4 -d,
// which keeps owners, modes (setuid included), hard links and device
// nodes. The image is sparse and twice the root's size, at least 1 GiB.
func MakeDisk(ctx context.Context, root *Root, img string) error {
	if _, err := exec.LookPath("mkfs.ext4"); err != nil {
		return fmt.Errorf("mkfs.ext4 is not installed (apt-get install e2fsprogs): %w", err)
	}
	var used int64
	filepath.WalkDir(root.Dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if info, err := d.Info(); err == nil {
				used += info.Size()
			}
		}
		return nil
	})
	size := max(int64(1)<<30, 2*used)
	os.Remove(img)
	cmd := exec.CommandContext(ctx, "mkfs.ext4", "-q", "-F", "-L", "root", "-d", root.Dir, img, fmt.Sprintf("%dk", size>>10))
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("mkfs.ext4: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}
