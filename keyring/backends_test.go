package keyring_test

// The backends register their schemes, so configurations naming aws-kms://,
// gcp-kms:// and local:// master keys validate in every test of the
// package.
import (
	_ "github.com/fieldcrypt/fieldcrypt/keyring/kms/awskms"
	_ "github.com/fieldcrypt/fieldcrypt/keyring/kms/gcpkms"
	_ "github.com/fieldcrypt/fieldcrypt/keyring/kms/localkms"
)
