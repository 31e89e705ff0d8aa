package backup

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/fieldcrypt/fieldcrypt/keyring/kms"
)

// addVectorSeeds seeds a fuzz target with every testdata vector.
func addVectorSeeds(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*.fcb"))
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte(magic))
	f.Add([]byte(magic + "\x01"))
	f.Add(append([]byte(magic+"\x01\x01\x00\x01\x00\x00"), make([]byte, 200)...))
}

// FuzzParseHeader: parsing never panics, never reads past the header it
// reports, and a parsed header re-encodes to exactly the bytes it came from.
func FuzzParseHeader(f *testing.F) {
	addVectorSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		h, err := Inspect(r)
		if err != nil {
			if !errors.Is(err, ErrMalformedHeader) && !errors.Is(err, ErrUnsupportedVersion) {
				t.Fatalf("error wraps no sentinel: %v", err)
			}
			return
		}
		consumed := len(data) - r.Len()
		if h.Size != consumed || h.Size > MaxHeaderSize {
			t.Fatalf("header size %d, consumed %d", h.Size, consumed)
		}
		enc := append(h.encodeBody(), h.mac[:]...)
		if !bytes.Equal(enc, data[:h.Size]) {
			t.Fatal("header does not re-encode to its input")
		}
		if err := h.checkFields(); err != nil {
			t.Fatalf("parsed header fails its own checks: %v", err)
		}
		_ = h.EncryptionContext().Canonical()
	})
}

// FuzzDecrypt feeds arbitrary bytes to Decrypt with the vector master key:
// no panic, every error wraps a sentinel, and output is only ever produced
// for input that authenticates.
func FuzzDecrypt(f *testing.F) {
	addVectorSeeds(f)
	opener := openerFor(vectorMasterKey(f, nil))
	f.Fuzz(func(t *testing.T, data []byte) {
		var out bytes.Buffer
		_, err := Decrypt(context.Background(), &out, bytes.NewReader(data), opener, DecryptOptions{Workers: 2})
		if err == nil {
			return
		}
		for _, s := range []error{ErrMalformedHeader, ErrUnsupportedVersion, ErrAuthentication, ErrTruncated, ErrTooLarge, kms.ErrKeyNotFound} {
			if errors.Is(err, s) {
				return
			}
		}
		t.Fatalf("error wraps no sentinel: %v", err)
	})
}
