package telemetry

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/fieldcrypt/fieldcrypt/keyring/kms"
)

func TestBackend(t *testing.T) {
	for _, tc := range []struct{ uri, want string }{
		{"local:///var/lib/fieldcrypt/critical.key", "local"},
		{"aws-kms://arn:aws:kms:eu-west-1:111122223333:key/1234", "awskms"},
		{"gcp-kms://projects/p/locations/l/keyRings/r/cryptoKeys/k", "gcpkms"},
		{"vault://secret/tenant-acme", "other"}, // never the URI itself
		{"", "other"},
	} {
		assert.Equal(t, tc.want, Backend(tc.uri), tc.uri)
	}
}

func TestKMSOutcome(t *testing.T) {
	wrap := func(err error) error {
		return &kms.Error{Op: "unwrap", URI: "local:///k", Err: fmt.Errorf("%w: detail", err)}
	}
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"ok", nil, OutcomeOK},
		{"unavailable", wrap(kms.ErrUnavailable), OutcomeUnavailable},
		{"deadline", fmt.Errorf("call: %w", context.DeadlineExceeded), OutcomeUnavailable},
		{"denied", wrap(kms.ErrAccessDenied), OutcomeDenied},
		{"disabled", wrap(kms.ErrKeyDisabled), OutcomeDenied},
		{"not found", wrap(kms.ErrKeyNotFound), OutcomeError},
		{"authentication", wrap(kms.ErrAuthentication), OutcomeError},
		{"other", errors.New("boom"), OutcomeError},
	} {
		t.Run(tc.name, func(t *testing.T) { assert.Equal(t, tc.want, KMSOutcome(tc.err)) })
	}
}

func TestClassLabel(t *testing.T) {
	for c, want := range map[uint8]string{0: "invalid", 1: "critical", 2: "high", 3: "moderate", 4: "low", 5: "public", 6: "invalid", 255: "invalid"} {
		assert.Equal(t, want, ClassLabel(c), "class byte %d", c)
	}
}

// TestNilKMS: a nil *KMS starts and ends calls without recording.
func TestNilKMS(t *testing.T) {
	var k *KMS
	ctx, end := k.Start(context.Background(), "local:///k", OpWrap)
	assert.NotNil(t, ctx)
	end(nil)
}
