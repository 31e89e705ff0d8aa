package awskms_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	kmssdk "github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fieldcrypt/fieldcrypt/internal/testsvc"
	"github.com/fieldcrypt/fieldcrypt/keyring/kms"
	"github.com/fieldcrypt/fieldcrypt/keyring/kms/awskms"
	"github.com/fieldcrypt/fieldcrypt/keyring/kms/kmstest"
)

const region = "us-east-1"

// client returns an AWS KMS client for endpoint with static test
// credentials: no credential chain, no IMDS, no traffic but to endpoint.
func client(endpoint string, maxAttempts int) *kmssdk.Client {
	return kmssdk.New(kmssdk.Options{
		Region:           region,
		BaseEndpoint:     aws.String(endpoint),
		Credentials:      credentials.NewStaticCredentialsProvider("test", "test", ""),
		RetryMaxAttempts: maxAttempts,
	})
}

// motoKey creates a symmetric key in moto and returns its ARN.
func motoKey(t *testing.T, c *kmssdk.Client) string {
	arn, _ := motoKeyID(t, c)
	return arn
}

// motoKeyID creates a symmetric key in moto and returns its ARN and ID
// (moto's DisableKey and ScheduleKeyDeletion want the bare ID).
func motoKeyID(t *testing.T, c *kmssdk.Client) (arn, id string) {
	t.Helper()
	out, err := c.CreateKey(context.Background(), &kmssdk.CreateKeyInput{Description: aws.String("fieldcrypt test " + t.Name())})
	require.NoError(t, err)
	return aws.ToString(out.KeyMetadata.Arn), aws.ToString(out.KeyMetadata.KeyId)
}

func openMoto(t *testing.T, c *kmssdk.Client, arn string) *awskms.MasterKey {
	t.Helper()
	k, err := awskms.New(context.Background(), "aws-kms://"+arn, awskms.WithClient(c))
	require.NoError(t, err)
	return k
}

func TestConformanceMoto(t *testing.T) {
	c := client(testsvc.Moto(t), 0)
	kmstest.RunConformance(t, kmstest.Harness{NewKey: func(t *testing.T) kms.MasterKey {
		return openMoto(t, c, motoKey(t, c))
	}})
}

func TestMotoErrors(t *testing.T) {
	endpoint := testsvc.Moto(t)
	c := client(endpoint, 0)
	ctx := context.Background()
	ec := kms.EncryptionContext{"classification": "critical"}
	secret := kmstest.RandomKey(t, 32)

	t.Run("unknown-key", func(t *testing.T) {
		arn := "arn:aws:kms:us-east-1:123456789012:key/00000000-0000-0000-0000-000000000000"
		k := openMoto(t, c, arn)
		_, err := k.Wrap(ctx, secret, ec)
		assert.ErrorIs(t, err, kms.ErrKeyNotFound)
		assert.Contains(t, err.Error(), k.URI())
		kmstest.RequireNoSecrets(t, err, secret)
	})
	t.Run("wrong-context", func(t *testing.T) {
		k := openMoto(t, c, motoKey(t, c))
		wrapped, err := k.Wrap(ctx, secret, ec)
		require.NoError(t, err)
		_, err = k.Unwrap(ctx, wrapped, kms.EncryptionContext{"classification": "public"})
		assert.ErrorIs(t, err, kms.ErrAuthentication)
		kmstest.RequireNoSecrets(t, err, secret, wrapped)
	})
	t.Run("ciphertext-of-another-key-is-access-denied", func(t *testing.T) {
		// moto (like AWS for a key the caller cannot use) answers
		// AccessDeniedException: the one access denial moto produces.
		a, b := openMoto(t, c, motoKey(t, c)), openMoto(t, c, motoKey(t, c))
		wrapped, err := a.Wrap(ctx, secret, ec)
		require.NoError(t, err)
		_, err = b.Unwrap(ctx, wrapped, ec)
		assert.ErrorIs(t, err, kms.ErrAccessDenied)
	})
	t.Run("alias", func(t *testing.T) {
		arn := motoKey(t, c)
		alias := fmt.Sprintf("alias/fieldcrypt-%d", time.Now().UnixNano())
		_, err := c.CreateAlias(ctx, &kmssdk.CreateAliasInput{AliasName: aws.String(alias), TargetKeyId: aws.String(arn)})
		require.NoError(t, err)
		aliasARN := "arn:aws:kms:us-east-1:123456789012:" + alias
		ka := openMoto(t, c, aliasARN)
		wrapped, err := ka.Wrap(ctx, secret, ec)
		require.NoError(t, err)
		got, err := ka.Unwrap(ctx, wrapped, ec)
		require.NoError(t, err)
		assert.Equal(t, secret, got)
		got, err = openMoto(t, c, arn).Unwrap(ctx, wrapped, ec)
		require.NoError(t, err)
		assert.Equal(t, secret, got)
	})
	for _, tc := range []struct {
		name  string
		state func(t *testing.T, keyID string)
	}{
		{"disabled", func(t *testing.T, keyID string) {
			_, err := c.DisableKey(ctx, &kmssdk.DisableKeyInput{KeyId: aws.String(keyID)})
			require.NoError(t, err)
		}},
		{"pending-deletion", func(t *testing.T, keyID string) {
			_, err := c.ScheduleKeyDeletion(ctx, &kmssdk.ScheduleKeyDeletionInput{KeyId: aws.String(keyID), PendingWindowInDays: aws.Int32(7)})
			require.NoError(t, err)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			arn, id := motoKeyID(t, c)
			k := openMoto(t, c, arn)
			tc.state(t, id)
			_, err := k.Wrap(ctx, secret, ec)
			if err == nil {
				t.Skipf("moto does not enforce the key state on Encrypt; the %s mapping is covered by TestErrorCodes", tc.name)
			}
			assert.ErrorIs(t, err, kms.ErrKeyDisabled)
		})
	}
	t.Run("kms-down", func(t *testing.T) {
		down := "http://" + closedPort(t)
		k := openMoto(t, client(down, 1), "arn:aws:kms:us-east-1:123456789012:key/00000000-0000-0000-0000-000000000000")
		start := time.Now()
		_, err := k.Wrap(ctx, secret, ec)
		assert.ErrorIs(t, err, kms.ErrUnavailable)
		assert.Less(t, time.Since(start), 2*time.Second)
		kmstest.RequireNoSecrets(t, err, secret)

		// With the default retries, the caller's deadline bounds the call.
		k = openMoto(t, client(down, 0), "arn:aws:kms:us-east-1:123456789012:key/00000000-0000-0000-0000-000000000000")
		dctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		defer cancel()
		start = time.Now()
		_, err = k.Unwrap(dctx, make([]byte, 100), ec)
		assert.ErrorIs(t, err, kms.ErrUnavailable)
		assert.Less(t, time.Since(start), 2*time.Second)
	})
}

// closedPort returns a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	return addr
}

// awsTestEnv is the environment a test or emulator setup uses: static
// credentials, no shared config files, no IMDS, and a region the ARN
// overrides.
func awsTestEnv(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("AWS_ACCESS_KEY_ID", "test")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "test")
	t.Setenv("AWS_SESSION_TOKEN", "")
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AWS_REGION", "eu-west-3") // must be ignored: the ARN says us-east-1
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "config"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "credentials"))
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_MAX_ATTEMPTS", "1")
}

// TestOpenerWithEmulator opens keys through a registry whose aws-kms
// opener is explicitly pointed at moto.
func TestOpenerWithEmulator(t *testing.T) {
	endpoint := testsvc.Moto(t)
	c := client(endpoint, 0)
	arn := motoKey(t, c)
	awsTestEnv(t)
	reg := new(kms.Registry)
	reg.Register(awskms.Scheme, awskms.Opener{Endpoint: endpoint, Insecure: true, DisableIMDS: true})

	ctx := context.Background()
	k, err := reg.OpenMasterKey(ctx, "aws-kms://"+arn)
	require.NoError(t, err)
	defer k.Close()
	assert.Equal(t, "aws-kms://"+arn, k.URI())
	wrapped, err := k.Wrap(ctx, []byte("0123456789abcdef"), kms.EncryptionContext{"a": "b"})
	require.NoError(t, err)
	got, err := openMoto(t, c, arn).Unwrap(ctx, wrapped, kms.EncryptionContext{"a": "b"})
	require.NoError(t, err)
	assert.Equal(t, "0123456789abcdef", string(got))

	_, err = reg.OpenMasterKey(ctx, "aws-kms://arn:aws:s3:::bucket")
	assert.ErrorIs(t, err, kms.ErrInvalidURI)
	// plain http without Insecure: refused before any call
	_, err = awskms.Opener{Endpoint: endpoint}.OpenMasterKey(ctx, "aws-kms://"+arn)
	assert.ErrorIs(t, err, kms.ErrInvalidInput)
	assert.Contains(t, err.Error(), "insecure")
}

// TestEnvironmentCannotRedirectKeys: neither fieldcrypt's old endpoint
// variable nor the SDK's own AWS_ENDPOINT_URL variables move the calls of
// the default opener: a server they name never sees a request.
func TestEnvironmentCannotRedirectKeys(t *testing.T) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		http.Error(w, "no", http.StatusInternalServerError)
	}))
	defer srv.Close()
	awsTestEnv(t)
	t.Setenv("FIELDCRYPT_AWS_KMS_ENDPOINT", srv.URL)
	t.Setenv("AWS_ENDPOINT_URL", srv.URL)
	t.Setenv("AWS_ENDPOINT_URL_KMS", srv.URL)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	k, err := kms.Open(ctx, "aws-kms://arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab")
	require.NoError(t, err)
	_, err = k.Wrap(ctx, []byte("0123456789abcdef"), nil)
	require.Error(t, err, "there is no real AWS KMS here: the call must fail")
	assert.Zero(t, hits.Load(), "the key went to the address in the environment")
}

func TestParseURI(t *testing.T) {
	cases := []struct {
		uri    string
		ok     bool
		region string
	}{
		{"aws-kms://arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab", true, "us-east-1"},
		{"aws-kms://arn:aws:kms:eu-west-3:111122223333:alias/fieldcrypt-critical", true, "eu-west-3"},
		{"aws-kms://arn:aws-cn:kms:cn-north-1:111122223333:key/mrk-1234", true, "cn-north-1"},
		{"aws-kms://arn:aws:kms::111122223333:key/1234", false, ""},
		{"aws-kms://arn:aws:kms:us-east-1::key/1234", false, ""},
		{"aws-kms://arn:aws:kms:us-east-1:111122223333:key/", false, ""},
		{"aws-kms://arn:aws:kms:us-east-1:111122223333:grant/1234", false, ""},
		{"aws-kms://arn:aws:s3:us-east-1:111122223333:key/1234", false, ""},
		{"aws-kms://1234abcd-12ab-34cd-56ef-1234567890ab", false, ""},
		{"aws-kms://alias/fieldcrypt", false, ""},
		{"aws-kms://", false, ""},
		{"gcp-kms://arn:aws:kms:us-east-1:111122223333:key/1234", false, ""},
	}
	for _, tc := range cases {
		t.Run(tc.uri, func(t *testing.T) {
			a, err := awskms.ParseURI(tc.uri)
			if !tc.ok {
				assert.ErrorIs(t, err, kms.ErrInvalidURI)
				_, err = awskms.New(context.Background(), tc.uri, awskms.WithClient(client("http://127.0.0.1:1", 1)))
				assert.ErrorIs(t, err, kms.ErrInvalidURI)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.region, a.Region)
		})
	}
}

func TestWithConfig(t *testing.T) {
	endpoint := testsvc.Moto(t)
	arn := motoKey(t, client(endpoint, 0))
	cfg := aws.Config{
		Region:       "eu-west-3", // overridden by the ARN's region
		Credentials:  credentials.NewStaticCredentialsProvider("test", "test", ""),
		BaseEndpoint: aws.String(endpoint),
	}
	k, err := awskms.New(context.Background(), "aws-kms://"+arn, awskms.WithConfig(cfg))
	require.NoError(t, err)
	wrapped, err := k.Wrap(context.Background(), []byte("0123456789abcdef"), nil)
	require.NoError(t, err)
	_, err = k.Unwrap(context.Background(), wrapped, nil)
	require.NoError(t, err)
}
