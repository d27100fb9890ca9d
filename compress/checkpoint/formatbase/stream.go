package formatbase

import (
	"fmt"
	"io"
)

// TensorStream reads n bytes at off of the file at path, through the
// caller's buffers, so a tensor can be copied without being held whole. A
// file that ends early (it shrank after it was opened) is an error naming
// the file and the tensor, never a short tensor.
func TensorStream(ra io.ReaderAt, path, name string, off, n int64) io.Reader {
	return &tensorStream{sr: io.NewSectionReader(ra, off, n), left: n, path: path, name: name}
}

type tensorStream struct {
	sr         *io.SectionReader
	left       int64
	path, name string
}

func (s *tensorStream) Read(p []byte) (int, error) {
	if s.left == 0 {
		return 0, io.EOF
	}
	n, err := s.sr.Read(p)
	s.left -= int64(n)
	switch {
	case err == io.EOF && s.left > 0:
		err = fmt.Errorf("%s: reading tensor %q: %w", s.path, s.name, io.ErrUnexpectedEOF)
	case err == io.EOF:
		err = nil // the next call says EOF
	case err != nil:
		err = fmt.Errorf("%s: reading tensor %q: %w", s.path, s.name, err)
	}
	return n, err
}
