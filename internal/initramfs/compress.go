package initramfs

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"

	"github.com/klauspost/compress/zstd"
)

// Codec names a compression the Debian and hull kernels decompress
// (CONFIG_RD_ZSTD, CONFIG_RD_GZIP) or none.
type Codec string

// Codecs.
const (
	Zstd Codec = "zstd"
	Gzip Codec = "gzip"
	None Codec = "none"
)

// ParseCodec checks a codec name.
func ParseCodec(s string) (Codec, error) {
	switch c := Codec(s); c {
	case Zstd, Gzip, None:
		return c, nil
	}
	return "", fmt.Errorf("unknown compression %q: want zstd, gzip or none", s)
}

// Compress wraps w so that what is written comes out compressed. The
// output is a pure function of the input: single-threaded encoders, no
// names or timestamps in headers.
func Compress(w io.Writer, c Codec) (io.WriteCloser, error) {
	switch c {
	case Zstd:
		// One goroutine keeps the output independent of scheduling; an
		// 8 MiB window keeps the kernel's decoder workspace small.
		return zstd.NewWriter(w,
			zstd.WithEncoderConcurrency(1),
			zstd.WithEncoderLevel(zstd.SpeedDefault),
			zstd.WithWindowSize(8<<20),
			zstd.WithEncoderCRC(true))
	case Gzip:
		return gzip.NewWriterLevel(w, gzip.BestSpeed)
	case None, "":
		return nopCloser{w}, nil
	}
	return nil, fmt.Errorf("unknown compression %q", c)
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

var (
	zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}
	gzipMagic = []byte{0x1f, 0x8b}
)

// Decompress detects the codec from the first bytes of r and returns a
// reader of the plain archive.
func Decompress(r io.Reader) (io.ReadCloser, Codec, error) {
	br := bufio.NewReaderSize(r, 256<<10)
	head, err := br.Peek(4)
	if err != nil && len(head) < 2 {
		return nil, "", fmt.Errorf("reading initramfs header: %w", err)
	}
	switch {
	case bytes.HasPrefix(head, zstdMagic):
		d, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, "", fmt.Errorf("zstd: %w", err)
		}
		return d.IOReadCloser(), Zstd, nil
	case bytes.HasPrefix(head, gzipMagic):
		z, err := gzip.NewReader(br)
		if err != nil {
			return nil, "", fmt.Errorf("gzip: %w", err)
		}
		return z, Gzip, nil
	case bytes.HasPrefix(head, []byte(magic[:4])):
		return io.NopCloser(br), None, nil
	}
	return nil, "", fmt.Errorf("not an initramfs: unknown header % x", head)
}
