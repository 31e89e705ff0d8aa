package gcpkms_test

import (
	"context"
	"log"

	"google.golang.org/api/option"

	"github.com/fieldcrypt/fieldcrypt/keyring/kms"
	"github.com/fieldcrypt/fieldcrypt/keyring/kms/gcpkms"
)

// The common case: name the key by URI; credentials are Application
// Default Credentials.
func Example() {
	ctx := context.Background()
	mk, err := kms.Open(ctx, "gcp-kms://projects/acme/locations/europe-west1/keyRings/fieldcrypt/cryptoKeys/critical")
	if err != nil {
		log.Fatal(err)
	}
	ec := kms.EncryptionContext{"classification": "critical", "kek": "v1"}
	wrapped, err := mk.Wrap(ctx, []byte("a 32-byte key encryption key...."), ec)
	if err != nil {
		log.Fatal(err) // errors.Is(err, kms.ErrKeyDisabled), kms.ErrUnavailable, ...
	}
	_ = wrapped
}

// With explicit client options, for example a regional endpoint.
func ExampleNew() {
	ctx := context.Background()
	mk, err := gcpkms.New(ctx, "gcp-kms://projects/acme/locations/europe-west1/keyRings/fieldcrypt/cryptoKeys/critical",
		gcpkms.WithClientOptions(option.WithEndpoint("europe-west1-kms.googleapis.com:443")))
	if err != nil {
		log.Fatal(err)
	}
	defer mk.Close()
}
