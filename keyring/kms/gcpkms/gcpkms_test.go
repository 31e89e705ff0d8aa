package gcpkms_test

import (
	"context"
	"fmt"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/fieldcrypt/fieldcrypt/internal/fakegcpkms"
	"github.com/fieldcrypt/fieldcrypt/keyring/kms"
	"github.com/fieldcrypt/fieldcrypt/keyring/kms/gcpkms"
	"github.com/fieldcrypt/fieldcrypt/keyring/kms/kmstest"
)

var keySeq atomic.Int64

// newKey registers a fresh crypto key on srv and opens it with a real
// Cloud KMS client.
func newKey(t *testing.T, srv *fakegcpkms.Server) (*gcpkms.MasterKey, string) {
	t.Helper()
	name := fakegcpkms.KeyName(fmt.Sprintf("k%d", keySeq.Add(1)))
	srv.AddKey(name)
	k, err := gcpkms.New(context.Background(), "gcp-kms://"+name, gcpkms.WithClient(srv.Client(t)))
	require.NoError(t, err)
	return k, name
}

func TestConformance(t *testing.T) {
	srv := fakegcpkms.Start(t)
	kmstest.RunConformance(t, kmstest.Harness{NewKey: func(t *testing.T) kms.MasterKey {
		k, _ := newKey(t, srv)
		return k
	}})
}

func TestKeyName(t *testing.T) {
	const good = "projects/p/locations/global/keyRings/r/cryptoKeys/k"
	cases := []struct {
		uri string
		ok  bool
	}{
		{"gcp-kms://" + good, true},
		{"gcp-kms://" + good + "/cryptoKeyVersions/1", false},
		{"gcp-kms://projects/p/locations/global/keyRings/r", false},
		{"gcp-kms://projects//locations/global/keyRings/r/cryptoKeys/k", false},
		{"gcp-kms://project/p/locations/global/keyRings/r/cryptoKeys/k", false},
		{"gcp-kms://", false},
		{"aws-kms://" + good, false},
		{good, false},
	}
	for _, tc := range cases {
		t.Run(tc.uri, func(t *testing.T) {
			name, err := gcpkms.KeyName(tc.uri)
			if !tc.ok {
				assert.ErrorIs(t, err, kms.ErrInvalidURI)
				_, err = gcpkms.New(context.Background(), tc.uri, gcpkms.WithClient(nil))
				assert.ErrorIs(t, err, kms.ErrInvalidURI)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, good, name)
		})
	}
}

// TestErrors drives each failure through the real client against the fake
// server and checks the sentinel it maps to.
func TestErrors(t *testing.T) {
	ctx := context.Background()
	ec := kms.EncryptionContext{"classification": "critical"}
	secret := kmstest.RandomKey(t, 32)

	t.Run("disabled", func(t *testing.T) {
		srv := fakegcpkms.Start(t)
		k, name := newKey(t, srv)
		wrapped, err := k.Wrap(ctx, secret, ec)
		require.NoError(t, err)
		srv.SetDisabled(name, true)
		_, err = k.Wrap(ctx, secret, ec)
		assert.ErrorIs(t, err, kms.ErrKeyDisabled)
		assertStatus(t, err, codes.FailedPrecondition)
		_, err = k.Unwrap(ctx, wrapped, ec)
		assert.ErrorIs(t, err, kms.ErrKeyDisabled)
		kmstest.RequireNoSecrets(t, err, secret, wrapped)
		srv.SetDisabled(name, false)
		_, err = k.Unwrap(ctx, wrapped, ec)
		assert.NoError(t, err)
	})
	t.Run("access-denied", func(t *testing.T) {
		srv := fakegcpkms.Start(t)
		k, name := newKey(t, srv)
		wrapped, err := k.Wrap(ctx, secret, ec)
		require.NoError(t, err)
		srv.SetDenied(name, true)
		_, err = k.Wrap(ctx, secret, ec)
		assert.ErrorIs(t, err, kms.ErrAccessDenied)
		assertStatus(t, err, codes.PermissionDenied)
		_, err = k.Unwrap(ctx, wrapped, ec)
		assert.ErrorIs(t, err, kms.ErrAccessDenied)
		kmstest.RequireNoSecrets(t, err, secret, wrapped)
	})
	t.Run("not-found", func(t *testing.T) {
		srv := fakegcpkms.Start(t)
		k, err := gcpkms.New(ctx, "gcp-kms://"+fakegcpkms.KeyName("missing"), gcpkms.WithClient(srv.Client(t)))
		require.NoError(t, err)
		_, err = k.Wrap(ctx, secret, ec)
		assert.ErrorIs(t, err, kms.ErrKeyNotFound)
		_, err = k.Unwrap(ctx, make([]byte, 64), ec)
		assert.ErrorIs(t, err, kms.ErrKeyNotFound)
		assert.Contains(t, err.Error(), k.URI())
	})
	t.Run("wrong-context", func(t *testing.T) {
		srv := fakegcpkms.Start(t)
		k, _ := newKey(t, srv)
		wrapped, err := k.Wrap(ctx, secret, ec)
		require.NoError(t, err)
		_, err = k.Unwrap(ctx, wrapped, kms.EncryptionContext{"classification": "public"})
		assert.ErrorIs(t, err, kms.ErrAuthentication)
		assertStatus(t, err, codes.InvalidArgument)
	})
	t.Run("corrupt-response-crc", func(t *testing.T) {
		srv := fakegcpkms.Start(t)
		k, _ := newKey(t, srv)
		wrapped, err := k.Wrap(ctx, secret, ec)
		require.NoError(t, err)
		srv.SetCorruptCRC(true)
		_, err = k.Wrap(ctx, secret, ec)
		assert.ErrorIs(t, err, gcpkms.ErrIntegrity)
		assert.ErrorIs(t, err, kms.ErrUnavailable)
		got, err := k.Unwrap(ctx, wrapped, ec)
		assert.ErrorIs(t, err, gcpkms.ErrIntegrity)
		assert.ErrorIs(t, err, kms.ErrUnavailable)
		assert.Nil(t, got)
		kmstest.RequireNoSecrets(t, err, secret, wrapped)
	})
	t.Run("request-crc-not-verified", func(t *testing.T) {
		srv := fakegcpkms.Start(t)
		k, _ := newKey(t, srv)
		srv.SetUnverified(true)
		_, err := k.Wrap(ctx, secret, ec)
		assert.ErrorIs(t, err, gcpkms.ErrIntegrity)
	})
	t.Run("server-down", func(t *testing.T) {
		srv := fakegcpkms.Start(t)
		k, _ := newKey(t, srv)
		wrapped, err := k.Wrap(ctx, secret, ec)
		require.NoError(t, err)
		srv.Stop()
		// The client retries Unavailable until the deadline.
		dctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err = k.Unwrap(dctx, wrapped, ec)
		assert.Less(t, time.Since(start), 3*time.Second)
		assert.ErrorIs(t, err, kms.ErrUnavailable)
		assert.ErrorIs(t, err, context.DeadlineExceeded)
		kmstest.RequireNoSecrets(t, err, secret, wrapped)
	})
	t.Run("cancel-in-flight", func(t *testing.T) {
		srv := fakegcpkms.Start(t)
		k, _ := newKey(t, srv)
		srv.Stop() // calls hang in retries until the ctx ends
		cctx, cancel := context.WithCancel(ctx)
		time.AfterFunc(200*time.Millisecond, cancel)
		start := time.Now()
		_, err := k.Wrap(cctx, secret, ec)
		assert.Less(t, time.Since(start), 2*time.Second)
		assert.ErrorIs(t, err, context.Canceled)
		assert.ErrorIs(t, err, kms.ErrUnavailable)
	})
	t.Run("invalid-input-does-not-call-kms", func(t *testing.T) {
		srv := fakegcpkms.Start(t)
		k, _ := newKey(t, srv)
		_, err := k.Wrap(ctx, nil, ec)
		assert.ErrorIs(t, err, kms.ErrInvalidInput)
		_, err = k.Unwrap(ctx, make([]byte, 100<<10), ec)
		assert.ErrorIs(t, err, kms.ErrInvalidInput)
		enc, dec := srv.Calls()
		assert.Zero(t, enc+dec)
	})
}

func assertStatus(t *testing.T, err error, want codes.Code) {
	t.Helper()
	assert.Equal(t, want, status.Code(err), "status code of %v", err)
}

func TestRegisteredOpener(t *testing.T) {
	srv := fakegcpkms.Start(t)
	name := fakegcpkms.KeyName("registered")
	srv.AddKey(name)
	t.Setenv(gcpkms.EndpointEnv, srv.Addr())
	ctx := context.Background()
	k, err := kms.Open(ctx, "gcp-kms://"+name)
	require.NoError(t, err)
	assert.Equal(t, "gcp-kms://"+name, k.URI())
	wrapped, err := k.Wrap(ctx, []byte("0123456789abcdef"), nil)
	require.NoError(t, err)
	k2, err := kms.Open(ctx, "gcp-kms://"+name)
	require.NoError(t, err)
	got, err := k2.Unwrap(ctx, wrapped, nil)
	require.NoError(t, err)
	assert.Equal(t, "0123456789abcdef", string(got))

	_, err = kms.Open(ctx, "gcp-kms://projects/p")
	assert.ErrorIs(t, err, kms.ErrInvalidURI)

	// The two keys share one client: it stays open until the last of them
	// is closed, and a key opened afterwards gets a new one.
	require.NoError(t, k.(io.Closer).Close())
	require.NoError(t, k.(io.Closer).Close(), "closing twice is a no-op")
	_, err = k2.Unwrap(ctx, wrapped, nil)
	require.NoError(t, err, "the other key's client is still open")
	require.NoError(t, k2.(io.Closer).Close())
	_, err = k2.Unwrap(ctx, wrapped, nil)
	assert.ErrorIs(t, err, kms.ErrUnavailable, "the shared client is closed with the last key")
	k3, err := kms.Open(ctx, "gcp-kms://"+name)
	require.NoError(t, err)
	defer k3.(io.Closer).Close()
	got, err = k3.Unwrap(ctx, wrapped, nil)
	require.NoError(t, err)
	assert.Equal(t, "0123456789abcdef", string(got))
}

func TestWithClientOptionsAndClose(t *testing.T) {
	srv := fakegcpkms.Start(t)
	name := fakegcpkms.KeyName("owned")
	srv.AddKey(name)
	ctx := context.Background()
	k, err := gcpkms.New(ctx, "gcp-kms://"+name, gcpkms.WithClientOptions(srv.ClientOptions()...))
	require.NoError(t, err)
	wrapped, err := k.Wrap(ctx, []byte("0123456789abcdef"), nil)
	require.NoError(t, err)
	_, err = k.Unwrap(ctx, wrapped, nil)
	require.NoError(t, err)
	require.NoError(t, k.Close())
}
