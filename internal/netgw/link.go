package netgw

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// maxFrameLen bounds the length prefix read from the stream. A length
// beyond it means the peer is not speaking QEMU's stream protocol (or is
// hostile), and the link is closed.
const maxFrameLen = 65535 + header.EthernetMinimumSize

// frameLink is a stack.LinkEndpoint carrying whole Ethernet frames over a
// byte stream, each frame preceded by its length as a 4-byte big-endian
// integer: the framing of QEMU's "-netdev stream" and "-netdev socket".
// It is wrapped in ethernet.New, which adds and strips the Ethernet header.
//
// The stream is attached with start once the peer has connected; until
// then outgoing frames are dropped, as on a link with no carrier. A single
// reader goroutine, started by start and ended by close, delivers incoming
// frames; writers are serialised by a mutex.
type frameLink struct {
	mtu   uint32 // Ethernet frame size without FCS: IP MTU + 14
	mac   tcpip.LinkAddress
	admit func(frame []byte) bool // nil admits every frame
	onErr func(error)             // told why the reader stopped, unless the stream just ended; may be nil

	mu         sync.RWMutex
	dispatcher stack.NetworkDispatcher
	onClose    func()

	wmu  sync.Mutex
	conn net.Conn // nil until start
	wbuf []byte

	startOnce sync.Once
	closeOnce sync.Once
	done      chan struct{} // closed when the reader has exited (or never ran)
}

func newFrameLink(ipMTU uint32, mac net.HardwareAddr, admit func([]byte) bool) *frameLink {
	return &frameLink{
		mtu:   ipMTU + header.EthernetMinimumSize,
		mac:   tcpip.LinkAddress(mac),
		admit: admit,
		done:  make(chan struct{}),
	}
}

// start attaches the stream and starts the reader. It may be called once.
func (l *frameLink) start(conn net.Conn) {
	l.startOnce.Do(func() {
		l.wmu.Lock()
		l.conn = conn
		l.wmu.Unlock()
		go l.read(conn)
	})
}

// close closes the stream and waits for the reader to exit.
func (l *frameLink) close() {
	l.closeOnce.Do(func() {
		started := true
		l.startOnce.Do(func() { // never started: nothing to wait for
			started = false
			close(l.done)
		})
		l.wmu.Lock()
		if l.conn != nil {
			l.conn.Close()
		}
		l.wmu.Unlock()
		if started {
			<-l.done
		}
	})
}

func (l *frameLink) read(conn net.Conn) {
	defer close(l.done)
	fail := func(err error) {
		if l.onErr != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, net.ErrClosed) {
			l.onErr(err)
		}
	}
	br := bufio.NewReaderSize(conn, 256<<10)
	var hdr [4]byte
	for {
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			fail(err)
			return
		}
		n := binary.BigEndian.Uint32(hdr[:])
		if n > maxFrameLen {
			conn.Close()
			fail(fmt.Errorf("frame length %d exceeds %d: not a QEMU stream netdev; link closed", n, maxFrameLen))
			return
		}
		frame := make([]byte, n)
		if _, err := io.ReadFull(br, frame); err != nil {
			fail(err)
			return
		}
		if n < header.EthernetMinimumSize || n > l.mtu {
			continue
		}
		if l.admit != nil && !l.admit(frame) {
			continue
		}
		l.mu.RLock()
		d := l.dispatcher
		l.mu.RUnlock()
		if d == nil {
			continue
		}
		pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(frame)})
		// The protocol is read from the Ethernet header by ethernet.Endpoint.
		d.DeliverNetworkPacket(0, pkt)
		pkt.DecRef()
	}
}

// WritePackets implements stack.LinkWriter: the batch goes out in one
// write. The write blocks while the peer does not read; QEMU reads its
// socket whenever the guest's receive ring has room, which the guest frees
// on its own, so this is backpressure, never a cycle.
func (l *frameLink) WritePackets(pkts stack.PacketBufferList) (int, tcpip.Error) {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	n := pkts.Len()
	if l.conn == nil {
		return n, nil // no carrier yet: dropped, as on the wire
	}
	buf := l.wbuf[:0]
	for _, pkt := range pkts.AsSlice() {
		buf = binary.BigEndian.AppendUint32(buf, uint32(pkt.Size()))
		for _, s := range pkt.AsSlices() {
			buf = append(buf, s...)
		}
	}
	l.wbuf = buf[:0]
	if cap(l.wbuf) > 1<<20 {
		l.wbuf = nil // don't pin a burst's buffer forever
	}
	if _, err := l.conn.Write(buf); err != nil {
		return 0, &tcpip.ErrClosedForSend{}
	}
	return n, nil
}

// MTU implements stack.LinkEndpoint; ethernet.Endpoint subtracts the
// Ethernet header to get the IP MTU.
func (l *frameLink) MTU() uint32 { return l.mtu }

// SetMTU implements stack.LinkEndpoint.
func (l *frameLink) SetMTU(mtu uint32) { l.mtu = mtu }

// MaxHeaderLength implements stack.LinkEndpoint.
func (*frameLink) MaxHeaderLength() uint16 { return 0 }

// LinkAddress implements stack.LinkEndpoint.
func (l *frameLink) LinkAddress() tcpip.LinkAddress { return l.mac }

// SetLinkAddress implements stack.LinkEndpoint.
func (l *frameLink) SetLinkAddress(addr tcpip.LinkAddress) { l.mac = addr }

// Capabilities implements stack.LinkEndpoint. Frames arrive over a local
// socket, never a wire, so incoming checksums are not re-verified;
// outgoing ones are computed (the guest kernel checks them).
func (*frameLink) Capabilities() stack.LinkEndpointCapabilities {
	return stack.CapabilityRXChecksumOffload
}

// Attach implements stack.LinkEndpoint.
func (l *frameLink) Attach(d stack.NetworkDispatcher) {
	l.mu.Lock()
	l.dispatcher = d
	l.mu.Unlock()
}

// IsAttached implements stack.LinkEndpoint.
func (l *frameLink) IsAttached() bool {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.dispatcher != nil
}

// Wait implements stack.LinkEndpoint. The reader is stopped by close, not
// by the stack, so Wait does not block.
func (*frameLink) Wait() {}

// ARPHardwareType implements stack.LinkEndpoint; ethernet.Endpoint turns
// it into ARPHardwareEther.
func (*frameLink) ARPHardwareType() header.ARPHardwareType { return header.ARPHardwareNone }

// AddHeader implements stack.LinkEndpoint; ethernet.Endpoint adds it.
func (*frameLink) AddHeader(*stack.PacketBuffer) {}

// ParseHeader implements stack.LinkEndpoint; ethernet.Endpoint parses it.
func (*frameLink) ParseHeader(*stack.PacketBuffer) bool { return true }

// Close implements stack.LinkEndpoint; called when the NIC is removed.
func (l *frameLink) Close() {
	l.mu.Lock()
	f := l.onClose
	l.onClose = nil
	l.mu.Unlock()
	if f != nil {
		f()
	}
}

// SetOnCloseAction implements stack.LinkEndpoint.
func (l *frameLink) SetOnCloseAction(f func()) {
	l.mu.Lock()
	l.onClose = f
	l.mu.Unlock()
}
