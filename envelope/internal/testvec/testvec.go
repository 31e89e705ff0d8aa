// Package testvec holds what the tests of internal/kwp and internal/siv
// share: hex decoding and loading a Wycheproof vector file (from the
// github.com/c2sp/wycheproof module, which tink-go tests with too).
package testvec

import (
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"testing"

	"github.com/c2sp/wycheproof"
)

// Hex decodes s or fails the test.
func Hex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

// Wycheproof decodes the testGroups of the named file of Wycheproof's
// testvectors_v1 into groups, a pointer to a slice of structs with a Tests
// field.
func Wycheproof(t testing.TB, file string, groups any) {
	t.Helper()
	raw, err := fs.ReadFile(wycheproof.TestVectors, file)
	if err != nil {
		t.Fatalf("reading Wycheproof %s: %v", file, err)
	}
	suite := struct {
		TestGroups any `json:"testGroups"`
	}{groups}
	if err := json.Unmarshal(raw, &suite); err != nil {
		t.Fatalf("decoding Wycheproof %s: %v", file, err)
	}
}
