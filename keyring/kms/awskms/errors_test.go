package awskms_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fieldcrypt/fieldcrypt/keyring/kms"
	"github.com/fieldcrypt/fieldcrypt/keyring/kms/awskms"
	"github.com/fieldcrypt/fieldcrypt/keyring/kms/kmstest"
)

const testARN = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"

// fakeKMS is a loopback AWS KMS endpoint that answers every request with
// the given status and JSON body (awsJson1_1, as KMS speaks it), so the
// real SDK parses real error responses.
func fakeKMS(t *testing.T, status int, body any) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(body)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestErrorCodes drives each AWS KMS error code through the real SDK
// against a loopback endpoint and checks the sentinel it maps to. moto does
// not produce most of these (it ignores key state and key policies on
// Encrypt/Decrypt), so this is where the mapping is proven.
func TestErrorCodes(t *testing.T) {
	secret := kmstest.RandomKey(t, 32)
	cases := []struct {
		code   string
		status int
		want   error
	}{
		{"AccessDeniedException", 400, kms.ErrAccessDenied},
		{"UnrecognizedClientException", 400, kms.ErrAccessDenied},
		{"ExpiredTokenException", 400, kms.ErrAccessDenied},
		{"DisabledException", 400, kms.ErrKeyDisabled},
		{"KMSInvalidStateException", 400, kms.ErrKeyDisabled},
		{"NotFoundException", 400, kms.ErrKeyNotFound},
		{"InvalidCiphertextException", 400, kms.ErrAuthentication},
		{"IncorrectKeyException", 400, kms.ErrAuthentication},
		{"InvalidKeyUsageException", 400, kms.ErrInvalidInput},
		{"ValidationException", 400, kms.ErrInvalidInput},
		{"SomethingNewException", 400, kms.ErrInvalidInput},
		{"KeyUnavailableException", 500, kms.ErrUnavailable},
		{"KMSInternalException", 500, kms.ErrUnavailable},
		{"DependencyTimeoutException", 503, kms.ErrUnavailable},
		{"ThrottlingException", 400, kms.ErrUnavailable},
		{"SomethingNewServerException", 500, kms.ErrUnavailable},
	}
	for _, tc := range cases {
		t.Run(tc.code, func(t *testing.T) {
			endpoint := fakeKMS(t, tc.status, map[string]string{
				"__type":  "com.amazonaws.kms#" + tc.code,
				"message": "the service said no",
			})
			k, err := awskms.New(context.Background(), "aws-kms://"+testARN, awskms.WithClient(client(endpoint, 1)))
			require.NoError(t, err)
			_, err = k.Wrap(context.Background(), secret, kms.EncryptionContext{"a": "b"})
			require.Error(t, err)
			assert.ErrorIs(t, err, tc.want)
			assert.Contains(t, err.Error(), tc.code)
			assert.Contains(t, err.Error(), "aws-kms://"+testARN)
			kmstest.RequireNoSecrets(t, err, secret)
			_, err = k.Unwrap(context.Background(), secret, kms.EncryptionContext{"a": "b"})
			assert.ErrorIs(t, err, tc.want)
			kmstest.RequireNoSecrets(t, err, secret)
		})
	}
}

// TestResponseKeyIDChecked: a response for another key is rejected, and the
// plaintext it carried is not returned.
func TestResponseKeyIDChecked(t *testing.T) {
	other := strings.Replace(testARN, "1234abcd", "9999abcd", 1)
	secret := kmstest.RandomKey(t, 32)
	endpoint := fakeKMS(t, 200, map[string]string{
		"KeyId":          other,
		"Plaintext":      base64.StdEncoding.EncodeToString(secret),
		"CiphertextBlob": base64.StdEncoding.EncodeToString(secret),
	})
	ctx := context.Background()
	for _, uri := range []string{
		"aws-kms://" + testARN,
		"aws-kms://arn:aws:kms:us-west-2:123456789012:alias/other-region",
		"aws-kms://arn:aws:kms:us-east-1:999999999999:alias/other-account",
	} {
		t.Run(uri, func(t *testing.T) {
			k, err := awskms.New(ctx, uri, awskms.WithClient(client(endpoint, 1)))
			require.NoError(t, err)
			got, err := k.Unwrap(ctx, []byte("some wrapped key"), nil)
			assert.ErrorIs(t, err, kms.ErrAuthentication)
			assert.Nil(t, got)
			kmstest.RequireNoSecrets(t, err, secret)
			_, err = k.Wrap(ctx, secret, nil)
			assert.ErrorIs(t, err, kms.ErrAuthentication)
		})
	}
	t.Run("alias-same-account-region-ok", func(t *testing.T) {
		k, err := awskms.New(ctx, "aws-kms://arn:aws:kms:us-east-1:123456789012:alias/fieldcrypt", awskms.WithClient(client(endpoint, 1)))
		require.NoError(t, err)
		got, err := k.Unwrap(ctx, []byte("some wrapped key"), nil)
		require.NoError(t, err)
		assert.Equal(t, secret, got)
	})
}
