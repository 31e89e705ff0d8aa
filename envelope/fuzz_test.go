package envelope_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/fieldcrypt/fieldcrypt/envelope"
	"github.com/fieldcrypt/fieldcrypt/envelope/envelopetest"
)

func addSeeds(f *testing.F) {
	e := envelope.New(envelopetest.New())
	siv := envelope.New(envelopetest.New(), envelope.WithSealSuite(envelope.SuiteRandomizedSIVWrap))
	for _, pt := range []string{"", "x", "123-45-6789"} {
		ct, err := e.Seal(ctx, patientSSN("1"), []byte(pt))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(ct)
		f.Add([]byte(envelope.EncodeText(ct)))
		ct, err = siv.Seal(ctx, patientSSN("1"), []byte(pt))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(ct)
		det, err := e.SealDeterministic(ctx, patientSSN(""), []byte(pt))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(det)
	}
	f.Add([]byte{})
	f.Add([]byte{0xFC, 0x01, 0x01, 0x00, 0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF})
	files, _ := filepath.Glob("testdata/vectors/*.json")
	for _, p := range files {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
}

// FuzzInspect: the header parser never panics and agrees with IsCiphertext.
func FuzzInspect(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := envelope.Inspect(b)
		if err == nil {
			if !envelope.IsCiphertext(b) {
				t.Fatalf("Inspect accepted input IsCiphertext rejects")
			}
			if !h.Class.Encrypted() || h.KEKVersion == 0 {
				t.Fatalf("Inspect returned an impossible header %+v", h)
			}
		}
	})
}

// FuzzOpen: Open never panics and never accepts input it did not produce.
func FuzzOpen(f *testing.F) {
	addSeeds(f)
	keys := envelopetest.New()
	e := envelope.New(keys)
	f.Fuzz(func(t *testing.T, b []byte) {
		if _, err := e.Open(ctx, patientSSN("1"), b); err == nil {
			t.Fatalf("Open accepted a ciphertext sealed under keys it does not share")
		}
		_, _ = e.Rewrap(ctx, patientSSN("1"), b)
	})
}

// FuzzDecodeText: the text decoder never panics, and any string it
// accepts re-encodes to exactly itself (the text form is canonical: no two
// stored strings decode to the same ciphertext).
func FuzzDecodeText(f *testing.F) {
	for _, s := range []string{
		"fc1:", "fc1:AAAA", "fc1:/+==", "plain", "fc1:AA\nAA", "fc1:AAAA\r\n", "fc1:\rAAAA", "fc1:AB", "fc1:AAAAA",
		"fc1:-_", "fc1:AA==", "fc1:AA AA",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b, err := envelope.DecodeText(s)
		if err == nil && envelope.EncodeText(b) != s {
			t.Fatalf("text form is not canonical: %q", s)
		}
	})
}
