package localkms_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/fieldcrypt/fieldcrypt/keyring/kms"
	"github.com/fieldcrypt/fieldcrypt/keyring/kms/localkms"
)

func Example() {
	dir, err := os.MkdirTemp("", "fieldcrypt-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "master-dev.key")

	// Once, at setup: create the key file (mode 0600, never overwritten).
	if _, err := localkms.Create(path); err != nil {
		log.Fatal(err)
	}

	// Everywhere else the key is named by its URI.
	ctx := context.Background()
	mk, err := kms.Open(ctx, localkms.URI(path))
	if err != nil {
		log.Fatal(err)
	}
	kek := bytes.Repeat([]byte{0x42}, 32) // in real use: a random KEK
	ec := kms.EncryptionContext{"classification": "critical", "kek": "v1"}

	wrapped, err := mk.Wrap(ctx, kek, ec)
	if err != nil {
		log.Fatal(err)
	}
	unwrapped, err := mk.Unwrap(ctx, wrapped, ec)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("wrapped %d bytes into %d; round trip ok: %v\n", len(kek), len(wrapped), bytes.Equal(kek, unwrapped))

	_, err = mk.Unwrap(ctx, wrapped, kms.EncryptionContext{"classification": "public", "kek": "v1"})
	fmt.Println("other context rejected:", errors.Is(err, kms.ErrAuthentication))
	// Output:
	// wrapped 32 bytes into 61; round trip ok: true
	// other context rejected: true
}
