package netgw

import (
	"syscall"

	"gvisor.dev/gvisor/pkg/tcpip"
)

// stackError is a netstack error with no errno equivalent.
type stackError struct{ msg string }

func (e *stackError) Error() string { return "netstack: " + e.msg }

// netErr is the one boundary where netstack's tcpip.Error becomes a Go
// error. Errors with a POSIX meaning become the syscall.Errno a kernel
// socket would give, so callers test them with errors.Is exactly as they
// would for host sockets (errors.Is(err, syscall.ECONNREFUSED)).
func netErr(e tcpip.Error) error {
	switch e.(type) {
	case nil:
		return nil
	case *tcpip.ErrConnectionRefused:
		return syscall.ECONNREFUSED
	case *tcpip.ErrConnectionReset:
		return syscall.ECONNRESET
	case *tcpip.ErrConnectionAborted, *tcpip.ErrAborted:
		return syscall.ECONNABORTED
	case *tcpip.ErrTimeout:
		return syscall.ETIMEDOUT
	case *tcpip.ErrNoNet, *tcpip.ErrNetworkUnreachable:
		return syscall.ENETUNREACH
	case *tcpip.ErrHostUnreachable, *tcpip.ErrHostDown:
		return syscall.EHOSTUNREACH
	case *tcpip.ErrPortInUse, *tcpip.ErrDuplicateAddress:
		return syscall.EADDRINUSE
	case *tcpip.ErrBadLocalAddress:
		return syscall.EADDRNOTAVAIL
	case *tcpip.ErrNoPortAvailable:
		return syscall.EAGAIN
	case *tcpip.ErrClosedForSend:
		return syscall.EPIPE
	case *tcpip.ErrNotConnected:
		return syscall.ENOTCONN
	case *tcpip.ErrAlreadyBound, *tcpip.ErrInvalidEndpointState, *tcpip.ErrInvalidOptionValue:
		return syscall.EINVAL
	case *tcpip.ErrMessageTooLong:
		return syscall.EMSGSIZE
	case *tcpip.ErrNoBufferSpace:
		return syscall.ENOBUFS
	case *tcpip.ErrNotPermitted:
		return syscall.EPERM
	default:
		return &stackError{msg: e.String()}
	}
}
