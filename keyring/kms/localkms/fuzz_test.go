package localkms_test

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/fieldcrypt/fieldcrypt/keyring/kms"
	"github.com/fieldcrypt/fieldcrypt/keyring/kms/localkms"
)

// FuzzUnwrap feeds arbitrary bytes to Unwrap: it must never panic, never
// succeed on anything but a genuine wrap, and always fail with a sentinel.
//
//	go test ./keyring/kms/localkms -run '^$' -fuzz FuzzUnwrap -fuzztime 30s
func FuzzUnwrap(f *testing.F) {
	ctx := context.Background()
	k, err := localkms.Create(filepath.Join(f.TempDir(), "fuzz.key"))
	if err != nil {
		f.Fatal(err)
	}
	ec := kms.EncryptionContext{"classification": "critical"}
	secret := bytes.Repeat([]byte{0xA5}, 32)
	good, err := k.Wrap(ctx, secret, ec)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte{})
	f.Add([]byte{0x01})
	f.Add(good[:29])
	f.Add(good[:30])
	f.Add(append([]byte{0x02}, good[1:]...))
	f.Add(append(bytes.Clone(good), 0x00))
	f.Add(make([]byte, 61))
	f.Add(make([]byte, 29+kms.MaxKeySize+1))

	f.Fuzz(func(t *testing.T, wrapped []byte) {
		got, err := k.Unwrap(ctx, wrapped, ec)
		if err == nil {
			if !bytes.Equal(wrapped, good) || !bytes.Equal(got, secret) {
				t.Fatalf("forged input unwrapped")
			}
			return
		}
		if got != nil {
			t.Fatalf("non-nil key with error %v", err)
		}
		if !errors.Is(err, kms.ErrAuthentication) && !errors.Is(err, kms.ErrInvalidInput) {
			t.Fatalf("error wraps no expected sentinel: %v", err)
		}
	})
}
