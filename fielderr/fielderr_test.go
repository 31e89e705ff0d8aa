package fielderr_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/fieldcrypt/fieldcrypt/audit"
	"github.com/fieldcrypt/fieldcrypt/backup"
	"github.com/fieldcrypt/fieldcrypt/console"
	"github.com/fieldcrypt/fieldcrypt/envelope"
	"github.com/fieldcrypt/fieldcrypt/fielderr"
	"github.com/fieldcrypt/fieldcrypt/gormcrypt"
	"github.com/fieldcrypt/fieldcrypt/keyring"
	"github.com/fieldcrypt/fieldcrypt/keyring/kms"
	"github.com/fieldcrypt/fieldcrypt/reencrypt"
)

// TestEverySentinelHasAKind lists every exported sentinel of the library:
// each maps to a kind, so the CLI (and any caller) needs no list of its own.
func TestEverySentinelHasAKind(t *testing.T) {
	tests := []struct {
		err  error
		want fielderr.Kind
	}{
		{audit.ErrPurposeRequired, fielderr.Refused},
		{audit.ErrLogInUse, fielderr.Refused},
		{audit.ErrTampered, fielderr.Tampered},
		{audit.ErrInvalidReview, fielderr.InvalidInput},
		{audit.ErrNothingToReview, fielderr.NotFound},
		{console.ErrAuditUnavailable, fielderr.Refused},
		{console.ErrInvalidQuery, fielderr.InvalidInput},
		{console.ErrNotSearchable, fielderr.InvalidInput},
		{console.ErrNotEncrypted, fielderr.InvalidInput},
		{gormcrypt.ErrPurposeRequired, fielderr.Refused},
		{gormcrypt.ErrAuditUnavailable, fielderr.Refused},
		{envelope.ErrAuthentication, fielderr.Authentication},
		{envelope.ErrMalformed, fielderr.Malformed},
		{envelope.ErrUnsupportedVersion, fielderr.Unsupported},
		{envelope.ErrUnknownKey, fielderr.NotFound},
		{envelope.ErrKeyDestroyed, fielderr.KeyDestroyed},
		{envelope.ErrKeyUnavailable, fielderr.KeyUnavailable},
		{envelope.ErrInvalidInput, fielderr.InvalidInput},
		{kms.ErrUnavailable, fielderr.KeyUnavailable},
		{kms.ErrAccessDenied, fielderr.AccessDenied},
		{kms.ErrKeyDisabled, fielderr.KeyUnavailable},
		{kms.ErrKeyNotFound, fielderr.NotFound},
		{kms.ErrAuthentication, fielderr.Authentication},
		{kms.ErrInvalidURI, fielderr.InvalidInput},
		{kms.ErrInvalidInput, fielderr.InvalidInput},
		{keyring.ErrInvalidConfig, fielderr.InvalidInput},
		{keyring.ErrRefused, fielderr.Refused},
		{keyring.ErrKeyRetired, fielderr.KeyRetired},
		{keyring.ErrTampered, fielderr.Tampered},
		{keyring.ErrUntrustedKey, fielderr.KeyUnavailable},
		{keyring.ErrUnsealed, fielderr.KeyUnavailable},
		{keyring.ErrTooSoon, fielderr.Refused},
		{keyring.ErrCircuitOpen, fielderr.KeyUnavailable},
		{keyring.ErrAccessDenied, fielderr.AccessDenied},
		{keyring.ErrStore, fielderr.Unknown},
		{keyring.ErrClosed, fielderr.Unknown},
		{backup.ErrMalformedHeader, fielderr.Malformed},
		{backup.ErrUnsupportedVersion, fielderr.Unsupported},
		{backup.ErrAuthentication, fielderr.Authentication},
		{backup.ErrTruncated, fielderr.Malformed},
		{backup.ErrTooLarge, fielderr.InvalidInput},
		{backup.ErrUntrustedKey, fielderr.KeyUnavailable},
		{backup.ErrInvalidInput, fielderr.InvalidInput},
		{reencrypt.ErrInvalidOptions, fielderr.InvalidInput},
		{reencrypt.ErrJobMismatch, fielderr.InvalidInput},
		{reencrypt.ErrConflict, fielderr.Conflict},
		{reencrypt.ErrMalformedValue, fielderr.Malformed},
		{gormcrypt.ErrNotCiphertext, fielderr.Malformed},
		{gormcrypt.ErrUnsupportedPath, fielderr.Unsupported},
		{gormcrypt.ErrNotSearchable, fielderr.InvalidInput},
		{gormcrypt.ErrTag, fielderr.InvalidInput},
		{gormcrypt.ErrNoKeySource, fielderr.InvalidInput},
	}
	for _, tt := range tests {
		t.Run(tt.err.Error(), func(t *testing.T) {
			assert.Equal(t, tt.want, fielderr.KindOf(tt.err))
			assert.Equal(t, tt.want, fielderr.KindOf(fmt.Errorf("outer: %w", tt.err)), "wrapped")
		})
	}
}

func TestMergedSentinels(t *testing.T) {
	// One value per meaning: a backup or kms authentication failure is an
	// envelope one too.
	assert.ErrorIs(t, backup.ErrAuthentication, envelope.ErrAuthentication)
	assert.ErrorIs(t, kms.ErrAuthentication, fielderr.ErrAuthentication)
	assert.ErrorIs(t, kms.ErrInvalidInput, envelope.ErrInvalidInput)
	assert.ErrorIs(t, backup.ErrInvalidInput, envelope.ErrInvalidInput)
	assert.ErrorIs(t, backup.ErrUntrustedKey, keyring.ErrUntrustedKey)
	assert.ErrorIs(t, backup.ErrUnsupportedVersion, envelope.ErrUnsupportedVersion)
}

func TestKindOfPrecedence(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want fielderr.Kind
	}{
		{"nil", nil, fielderr.OK},
		{"plain", errors.New("disk full"), fielderr.Unknown},
		{"canceled", fmt.Errorf("x: %w", context.Canceled), fielderr.Canceled},
		{"canceled wins", errors.Join(kms.ErrUnavailable, context.Canceled), fielderr.Canceled},
		{"refusal wins over its cause", errors.Join(keyring.ErrRefused, envelope.ErrKeyDestroyed), fielderr.Refused},
		{"tampered store makes a key unavailable", errors.Join(envelope.ErrKeyUnavailable, keyring.ErrTampered), fielderr.Tampered},
		{"retired", errors.Join(envelope.ErrKeyUnavailable, keyring.ErrKeyRetired), fielderr.KeyRetired},
		{"kms refused input: key unavailable", errors.Join(envelope.ErrKeyUnavailable, kms.ErrInvalidInput), fielderr.KeyUnavailable},
		{"kms error type", &kms.Error{Op: "unwrap", URI: "x://y", Err: kms.ErrAccessDenied}, fielderr.AccessDenied},
		{"mark", fielderr.Mark(errors.New("bad flag"), fielderr.InvalidInput), fielderr.InvalidInput},
		{"mark nil", fielderr.Mark(nil, fielderr.InvalidInput), fielderr.OK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, fielderr.KindOf(tt.err))
		})
	}
	assert.Equal(t, "key_destroyed", fielderr.KeyDestroyed.String())
}

func ExampleKindOf() {
	err := fmt.Errorf("open patients.ssn row 7: %w", envelope.ErrKeyDestroyed)
	switch fielderr.KindOf(err) {
	case fielderr.KeyDestroyed:
		fmt.Println("the data is gone for good")
	case fielderr.KeyUnavailable:
		fmt.Println("try again later")
	}
	// Output: the data is gone for good
}
