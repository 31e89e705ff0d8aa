package awskms_test

import (
	"context"
	"log"

	"github.com/aws/aws-sdk-go-v2/config"

	"github.com/fieldcrypt/fieldcrypt/keyring/kms"
	"github.com/fieldcrypt/fieldcrypt/keyring/kms/awskms"
)

// The common case: name the key by URI; credentials come from the SDK's
// default chain and the region from the ARN.
func Example() {
	ctx := context.Background()
	mk, err := kms.Open(ctx, "aws-kms://arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab")
	if err != nil {
		log.Fatal(err)
	}
	ec := kms.EncryptionContext{"classification": "critical", "kek": "v1"}
	wrapped, err := mk.Wrap(ctx, []byte("a 32-byte key encryption key...."), ec)
	if err != nil {
		log.Fatal(err) // errors.Is(err, kms.ErrAccessDenied), kms.ErrUnavailable, ...
	}
	_ = wrapped
}

// With an explicit AWS configuration (a profile, an assumed role, ...).
func ExampleNew() {
	ctx := context.Background()
	cfg, err := config.LoadDefaultConfig(ctx, config.WithSharedConfigProfile("fieldcrypt"))
	if err != nil {
		log.Fatal(err)
	}
	mk, err := awskms.New(ctx, "aws-kms://arn:aws:kms:eu-west-1:111122223333:alias/fieldcrypt-critical", awskms.WithConfig(cfg))
	if err != nil {
		log.Fatal(err)
	}
	_ = mk
}
