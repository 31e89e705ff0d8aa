package awskms

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"

	"github.com/aws/smithy-go"
	"github.com/stretchr/testify/assert"

	"github.com/fieldcrypt/fieldcrypt/keyring/kms"
)

func TestMapError(t *testing.T) {
	live := context.Background()
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	api := func(code string, fault smithy.ErrorFault) error {
		return fmt.Errorf("operation error KMS: Decrypt: %w", &smithy.GenericAPIError{Code: code, Message: "m", Fault: fault})
	}
	cases := []struct {
		name string
		ctx  context.Context
		err  error
		want []error
	}{
		{"access-denied", live, api("AccessDeniedException", smithy.FaultClient), []error{kms.ErrAccessDenied}},
		{"disabled", live, api("DisabledException", smithy.FaultClient), []error{kms.ErrKeyDisabled}},
		{"invalid-state", live, api("KMSInvalidStateException", smithy.FaultClient), []error{kms.ErrKeyDisabled}},
		{"not-found", live, api("NotFoundException", smithy.FaultClient), []error{kms.ErrKeyNotFound}},
		{"invalid-ciphertext", live, api("InvalidCiphertextException", smithy.FaultClient), []error{kms.ErrAuthentication}},
		{"incorrect-key", live, api("IncorrectKeyException", smithy.FaultClient), []error{kms.ErrAuthentication}},
		{"unknown-client", live, api("NewException", smithy.FaultClient), []error{kms.ErrInvalidInput}},
		{"unknown-server", live, api("NewException", smithy.FaultServer), []error{kms.ErrUnavailable}},
		{"network", live, &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}, []error{kms.ErrUnavailable}},
		{"ctx-cancelled", cancelled, errors.New("request canceled"), []error{kms.ErrUnavailable, context.Canceled}},
		{"wrapped-deadline", live, fmt.Errorf("x: %w", context.DeadlineExceeded), []error{kms.ErrUnavailable, context.DeadlineExceeded}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := mapError(tc.ctx, tc.err)
			for _, w := range tc.want {
				assert.ErrorIs(t, got, w)
			}
			assert.ErrorIs(t, got, tc.err, "the provider error stays wrapped")
		})
	}
}
