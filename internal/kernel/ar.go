package kernel

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// A .deb is a Unix ar archive: the magic, then per member a 60-byte text
// header and the member data padded to an even length. This reader streams
// members in order and handles the GNU ("name/") and BSD ("#1/len") name
// forms; Debian uses neither long-name table, so the GNU "//" table is just
// another member here.

const (
	arMagic      = "!<arch>\n"
	arHeaderSize = 60
	// arMaxMember bounds a member's declared size so a corrupt header is
	// reported as such instead of being trusted; real .debs are < 1 GiB.
	arMaxMember = 1 << 40
	arMaxName   = 4096
)

var errNotAr = errors.New("not an ar archive (a .deb starts with \"!<arch>\")")

type arHeader struct {
	Name string
	Size int64 // data size, excluding a BSD long name
}

type arReader struct {
	r    io.Reader
	left int64 // unread bytes of the current member
	pad  bool  // the current member is followed by one padding byte
}

func newArReader(r io.Reader) (*arReader, error) {
	var magic [len(arMagic)]byte
	if _, err := io.ReadFull(r, magic[:]); err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return nil, errNotAr
		}
		return nil, err
	}
	if string(magic[:]) != arMagic {
		return nil, errNotAr
	}
	return &arReader{r: r}, nil
}

// Next skips what is left of the current member and returns the next
// header, or io.EOF at a clean end of the archive.
func (a *arReader) Next() (*arHeader, error) {
	skip := a.left
	if skip > 0 {
		if n, err := io.CopyN(io.Discard, a.r, skip); err != nil {
			a.left -= n
			return nil, eofIsUnexpected(err)
		}
		a.left = 0
	}
	if a.pad {
		a.pad = false
		var b [1]byte
		if _, err := io.ReadFull(a.r, b[:]); err != nil {
			// Some writers drop the final padding byte; an archive that
			// ends right there is still complete.
			if err == io.EOF {
				return nil, io.EOF
			}
			return nil, err
		}
		if b[0] != '\n' {
			return nil, fmt.Errorf("ar: bad padding byte %#x", b[0])
		}
	}
	var hdr [arHeaderSize]byte
	n, err := io.ReadFull(a.r, hdr[:])
	if err != nil {
		if err == io.EOF && n == 0 {
			return nil, io.EOF
		}
		return nil, eofIsUnexpected(err)
	}
	h, nameLen, err := parseArHeader(hdr[:])
	if err != nil {
		return nil, err
	}
	a.left = h.Size
	a.pad = h.Size%2 == 1
	if nameLen > 0 {
		name := make([]byte, nameLen)
		if _, err := io.ReadFull(a.r, name); err != nil {
			return nil, eofIsUnexpected(err)
		}
		a.left -= int64(nameLen)
		h.Name = string(bytes.TrimRight(name, "\x00"))
		h.Size = a.left
	}
	return h, nil
}

// parseArHeader decodes a header; nameLen > 0 means a BSD long name of that
// many bytes precedes the data (and is counted in Size).
func parseArHeader(b []byte) (h *arHeader, nameLen int, err error) {
	if len(b) != arHeaderSize || b[58] != '`' || b[59] != '\n' {
		return nil, 0, errors.New("ar: bad member header")
	}
	sizeField := strings.TrimRight(string(b[48:58]), " ")
	size, err := strconv.ParseInt(sizeField, 10, 64)
	if err != nil || size < 0 || size > arMaxMember || sizeField == "" || sizeField[0] == '+' {
		return nil, 0, fmt.Errorf("ar: bad member size %q", sizeField)
	}
	name := strings.TrimRight(string(b[0:16]), " ")
	if rest, ok := strings.CutPrefix(name, "#1/"); ok {
		n, err := strconv.Atoi(rest)
		if err != nil || n <= 0 || n > arMaxName || int64(n) > size {
			return nil, 0, fmt.Errorf("ar: bad long name length %q", rest)
		}
		return &arHeader{Size: size}, n, nil
	}
	if name != "/" && name != "//" {
		name = strings.TrimSuffix(name, "/")
	}
	return &arHeader{Name: name, Size: size}, 0, nil
}

func (a *arReader) Read(p []byte) (int, error) {
	if a.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > a.left {
		p = p[:a.left]
	}
	n, err := a.r.Read(p)
	a.left -= int64(n)
	if err == io.EOF && a.left > 0 {
		err = io.ErrUnexpectedEOF
	}
	if err == io.EOF {
		err = nil // the member is whole; the next Read reports its end
	}
	return n, err
}

func eofIsUnexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
