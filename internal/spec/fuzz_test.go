package spec_test

import (
	"testing"

	"github.com/hullvm/hull/internal/spec"
)

// FuzzParse feeds arbitrary bytes to Parse. Whatever Parse accepts must
// survive Normalize and Validate without panicking, and a spec that
// validates once must validate again unchanged (Validate canonicalises
// egress rules in place, so a second pass sees its own output).
// The seed corpus is in testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	f.Add([]byte("program: ./app\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := spec.Parse(data)
		if err != nil {
			return
		}
		if s == nil {
			t.Fatal("Parse() = nil, nil; want a spec or an error")
		}
		s.Normalize()
		if err := s.Validate(); err != nil {
			return
		}
		if err := s.Validate(); err != nil {
			t.Fatalf("second Validate() = %v, want nil like the first", err)
		}
	})
}
