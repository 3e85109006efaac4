//go:build !unix

package kernelbuild

import (
	"fmt"
	"runtime"
)

func lockDir(dir string) (func(), error) {
	return nil, fmt.Errorf("building a kernel is unsupported on %s", runtime.GOOS)
}
