package kms_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/fieldcrypt/fieldcrypt/keyring"
	"github.com/fieldcrypt/fieldcrypt/keyring/kms"
	"github.com/fieldcrypt/fieldcrypt/keyring/kms/awskms"
	"github.com/fieldcrypt/fieldcrypt/keyring/kms/gcpkms"
	"github.com/fieldcrypt/fieldcrypt/keyring/kms/localkms"
)

// FuzzMasterKeyURI runs every master key URI parser on the same input:
// kms.Scheme, keyring.CheckMasterKeyURI (configuration) and the backends'
// awskms.ParseURI, gcpkms.KeyName and localkms.PathFromURI. Each error
// wraps its package's sentinel; what a parser accepts round-trips to the
// same URI; and a URI the configuration accepts is one its backend parses,
// so a validated configuration never fails later at open.
//
//	go test ./keyring/kms -run '^$' -fuzz FuzzMasterKeyURI -fuzztime 30s
func FuzzMasterKeyURI(f *testing.F) {
	for _, s := range []string{
		"aws-kms://arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
		"aws-kms://arn:aws:kms:eu-west-1:111122223333:alias/fieldcrypt/critical",
		"aws-kms://arn:aws-us-gov:kms:us-gov-west-1:111122223333:key/k",
		"aws-kms://arn:aws:s3:eu-west-1:111122223333:key/k", "aws-kms://arn:aws:kms:::key/k",
		"gcp-kms://projects/p/locations/l/keyRings/r/cryptoKeys/k",
		"gcp-kms://projects/p/locations/l/keyRings/r/cryptoKeys/k/cryptoKeyVersions/1",
		"gcp-kms://projects//locations/l/keyRings/r/cryptoKeys/k",
		"local:///var/lib/fieldcrypt/dev.key", "local://keys/dev.key", "local://", "local:// ", "local://a\x00b",
		"://x", "x://", "", "no-scheme", "unknown://x",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, uri string) {
		scheme, err := kms.Scheme(uri)
		switch {
		case err != nil && !errors.Is(err, kms.ErrInvalidURI):
			t.Fatalf("kms.Scheme: error without ErrInvalidURI: %v", err)
		case err == nil && (scheme == "" || !strings.HasPrefix(uri, scheme+"://")):
			t.Fatalf("kms.Scheme(%q) = %q", uri, scheme)
		}

		configOK := keyring.CheckMasterKeyURI(uri) == nil
		if err := keyring.CheckMasterKeyURI(uri); err != nil && !errors.Is(err, keyring.ErrInvalidConfig) {
			t.Fatalf("CheckMasterKeyURI: error without ErrInvalidConfig: %v", err)
		}

		a, err := awskms.ParseURI(uri)
		if err != nil && !errors.Is(err, kms.ErrInvalidURI) {
			t.Fatalf("awskms.ParseURI: error without ErrInvalidURI: %v", err)
		}
		if err == nil && awskms.Scheme+"://"+a.String() != uri {
			t.Fatalf("awskms.ParseURI(%q) does not round-trip: %q", uri, a.String())
		}
		if configOK && scheme == awskms.Scheme && err != nil {
			t.Fatalf("configuration accepts %q, awskms refuses it: %v", uri, err)
		}

		name, err := gcpkms.KeyName(uri)
		if err != nil && !errors.Is(err, kms.ErrInvalidURI) {
			t.Fatalf("gcpkms.KeyName: error without ErrInvalidURI: %v", err)
		}
		if err == nil && gcpkms.Scheme+"://"+name != uri {
			t.Fatalf("gcpkms.KeyName(%q) = %q does not round-trip", uri, name)
		}
		if configOK && scheme == gcpkms.Scheme && err != nil {
			t.Fatalf("configuration accepts %q, gcpkms refuses it: %v", uri, err)
		}

		path, err := localkms.PathFromURI(uri)
		if err != nil && !errors.Is(err, kms.ErrInvalidURI) {
			t.Fatalf("localkms.PathFromURI: error without ErrInvalidURI: %v", err)
		}
		if err == nil && localkms.URI(path) != uri {
			t.Fatalf("localkms.PathFromURI(%q) = %q does not round-trip", uri, path)
		}
		if configOK && scheme == localkms.Scheme && err != nil {
			t.Fatalf("configuration accepts %q, localkms refuses it: %v", uri, err)
		}
	})
}
