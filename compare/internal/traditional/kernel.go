package traditional

import (
	"fmt"

	"github.com/hullvm/hull/internal/kernel"
)

// needConfig are the kernel options the traditional VM needs built in,
// and why. Stage 1 loads only the bundle's own modules (the VM boots
// exactly the bundle hull boots, nothing added), so ext4 must be built
// in; and a Debian system's boot runs #! scripts, stage 1 and the init
// script among them. Debian's cloud kernel has both; hull's tuned
// kernel, made for one ELF program, has no script support.
var needConfig = []struct{ option, why string }{
	{"EXT4_FS", "its root disk is ext4"},
	{"BINFMT_SCRIPT", "a Debian system's boot runs #! scripts (stage 1 and /sbin/init among them)"},
}

// CheckKernel says whether bundle b can boot the traditional VM.
func CheckKernel(b *kernel.Bundle) error {
	for _, n := range needConfig {
		switch v := b.ConfigValue(n.option); v {
		case "y":
		case "":
			return fmt.Errorf("kernel %s does not have CONFIG_%s built in, and the traditional VM needs it: %s; compare on a distribution kernel (make compare pins Debian's)", b.Name, n.option, n.why)
		default:
			return fmt.Errorf("kernel %s has CONFIG_%s=%s, and the traditional VM needs it built in: %s; compare on a distribution kernel (make compare pins Debian's)", b.Name, n.option, v, n.why)
		}
	}
	return nil
}
