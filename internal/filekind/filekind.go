// Package filekind names what a non-regular file is, for the one-line
// errors hull gives when it finds a pipe, device or symlink where it
// wanted a regular file (an image input, a program, a kernel bundle).
package filekind

import "io/fs"

// Of returns "a symlink", "a directory", "a named pipe", "a socket",
// "a device", "a regular file" or "a special file".
func Of(m fs.FileMode) string {
	switch {
	case m&fs.ModeSymlink != 0:
		return "a symlink"
	case m.IsDir():
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeDevice != 0:
		return "a device"
	case m.IsRegular():
		return "a regular file"
	}
	return "a special file"
}
