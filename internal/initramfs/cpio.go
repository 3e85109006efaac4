// Package initramfs writes and reads the cpio "newc" archives the Linux
// kernel unpacks as its initial root filesystem, and compresses them with
// a codec the kernel can decompress.
//
// Output is deterministic: the caller supplies entries in order, inode
// numbers count up from 1, and every timestamp, owner and device number is
// zero. Device nodes and hard links are deliberately not supported: the
// image has none (the guest init creates /dev at boot).
package initramfs

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

const (
	magic   = "070701"
	trailer = "TRAILER!!!"
	hdrLen  = 110

	modeDir  = 0o040000
	modeFile = 0o100000
	modeLink = 0o120000
	modeType = 0o170000
)

// Writer emits a newc archive.
type Writer struct {
	w   *bufio.Writer
	ino uint32
	n   int64
	err error
}

// NewWriter starts an archive on w. Close must be called to finish it.
func NewWriter(w io.Writer) *Writer {
	return &Writer{w: bufio.NewWriterSize(w, 256<<10)}
}

func (w *Writer) write(p []byte) {
	if w.err != nil {
		return
	}
	n, err := w.w.Write(p)
	w.n += int64(n)
	w.err = err
}

func (w *Writer) pad() {
	if r := w.n % 4; r != 0 {
		w.write(make([]byte, 4-r))
	}
}

func (w *Writer) header(name string, mode uint32, nlink uint32, size int64) error {
	name = strings.TrimPrefix(name, "/")
	if name == "" || strings.IndexByte(name, 0) >= 0 {
		return fmt.Errorf("cpio: bad entry name %q", name)
	}
	if size < 0 || size > 0xffffffff {
		return fmt.Errorf("cpio: %s: size %d does not fit newc's 32-bit field", name, size)
	}
	w.ino++
	var b strings.Builder
	b.Grow(hdrLen)
	b.WriteString(magic)
	for _, v := range []uint64{
		uint64(w.ino), uint64(mode), 0, 0, uint64(nlink), 0, uint64(size),
		0, 0, 0, 0, uint64(len(name) + 1), 0,
	} {
		s := strconv.FormatUint(v, 16)
		b.WriteString(strings.Repeat("0", 8-len(s)))
		b.WriteString(s)
	}
	w.write([]byte(b.String()))
	w.write([]byte(name))
	w.write([]byte{0})
	w.pad()
	return w.err
}

// Dir adds a directory with permission bits perm.
func (w *Writer) Dir(name string, perm uint32) error {
	return w.header(name, modeDir|perm&0o7777, 2, 0)
}

// Symlink adds a symbolic link to target.
func (w *Writer) Symlink(name, target string) error {
	if err := w.header(name, modeLink|0o777, 1, int64(len(target))); err != nil {
		return err
	}
	w.write([]byte(target))
	w.pad()
	return w.err
}

// File adds a regular file of exactly size bytes read from r.
func (w *Writer) File(name string, perm uint32, size int64, r io.Reader) error {
	if err := w.header(name, modeFile|perm&0o7777, 1, size); err != nil {
		return err
	}
	if w.err != nil {
		return w.err
	}
	n, err := io.CopyN(w.w, r, size)
	w.n += n
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = fmt.Errorf("cpio: %s: file shrank while being archived (%d of %d bytes)", name, n, size)
		}
		w.err = err
		return err
	}
	w.pad()
	return w.err
}

// Close writes the trailer and flushes. It does not close the underlying
// writer.
func (w *Writer) Close() error {
	if err := w.header(trailer, 0, 1, 0); err != nil {
		return err
	}
	if w.err != nil {
		return w.err
	}
	return w.w.Flush()
}

// Entry is one archive member as read back.
type Entry struct {
	Name string // without leading slash
	Mode uint32 // type and permission bits as in stat(2)
	Size int64
	Link string // symlink target
}

// IsDir, IsRegular and IsSymlink classify the entry.
func (e Entry) IsDir() bool     { return e.Mode&modeType == modeDir }
func (e Entry) IsRegular() bool { return e.Mode&modeType == modeFile }
func (e Entry) IsSymlink() bool { return e.Mode&modeType == modeLink }

// Perm returns the permission bits, including setuid/setgid/sticky.
func (e Entry) Perm() uint32 { return e.Mode & 0o7777 }

// Reader reads a newc archive (uncompressed; see Open for compressed).
type Reader struct {
	r    *bufio.Reader
	n    int64
	left int64 // unread data of the current entry
	pad  int64
}

// NewReader reads an archive from r.
func NewReader(r io.Reader) *Reader {
	return &Reader{r: bufio.NewReaderSize(r, 256<<10)}
}

func (r *Reader) skip(n int64) error {
	m, err := io.CopyN(io.Discard, r.r, n)
	r.n += m
	return err
}

// Next advances to the next entry; io.EOF after the trailer.
func (r *Reader) Next() (Entry, error) {
	if err := r.skip(r.left + r.pad); err != nil {
		return Entry{}, fmt.Errorf("cpio: truncated: %w", noEOF(err))
	}
	r.left, r.pad = 0, 0
	var hdr [hdrLen]byte
	if _, err := io.ReadFull(r.r, hdr[:]); err != nil {
		// Only the trailer ends an archive: running out of bytes before
		// it is truncation, not the io.EOF callers stop on.
		return Entry{}, fmt.Errorf("cpio: reading header at %d: %w", r.n, noEOF(err))
	}
	r.n += hdrLen
	if string(hdr[:6]) != magic {
		return Entry{}, fmt.Errorf("cpio: bad magic %q at offset %d (not a newc archive)", hdr[:6], r.n-hdrLen)
	}
	field := func(i int) (uint64, error) {
		return strconv.ParseUint(string(hdr[6+8*i:14+8*i]), 16, 32)
	}
	var f [13]uint64
	for i := range f {
		v, err := field(i)
		if err != nil {
			return Entry{}, fmt.Errorf("cpio: bad header field %d: %w", i, err)
		}
		f[i] = v
	}
	nameLen := int64(f[11])
	if nameLen < 1 || nameLen > 4096 {
		return Entry{}, fmt.Errorf("cpio: bad name length %d", nameLen)
	}
	name := make([]byte, nameLen)
	if _, err := io.ReadFull(r.r, name); err != nil {
		return Entry{}, fmt.Errorf("cpio: reading name: %w", noEOF(err))
	}
	r.n += nameLen
	if err := r.skip(padTo4(r.n)); err != nil {
		return Entry{}, fmt.Errorf("cpio: truncated: %w", noEOF(err))
	}
	e := Entry{Name: string(name[:nameLen-1]), Mode: uint32(f[1]), Size: int64(f[6])}
	if e.Name == trailer {
		return Entry{}, io.EOF
	}
	r.left = e.Size
	r.pad = padTo4(r.n + e.Size)
	if e.IsSymlink() {
		t := make([]byte, e.Size)
		if _, err := io.ReadFull(r.r, t); err != nil {
			return Entry{}, fmt.Errorf("cpio: reading link %s: %w", e.Name, noEOF(err))
		}
		r.n += e.Size
		r.left = 0
		e.Link = string(t)
	}
	return e, nil
}

// Read reads the current entry's data.
func (r *Reader) Read(p []byte) (int, error) {
	if r.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > r.left {
		p = p[:r.left]
	}
	n, err := r.r.Read(p)
	r.n += int64(n)
	r.left -= int64(n)
	if errors.Is(err, io.EOF) && r.left > 0 {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

func padTo4(n int64) int64 { return (4 - n%4) % 4 }

// noEOF turns io.EOF into io.ErrUnexpectedEOF, so that a wrapped error of
// a truncated archive never matches errors.Is(err, io.EOF).
func noEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
