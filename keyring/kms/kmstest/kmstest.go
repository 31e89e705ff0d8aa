// Package kmstest is the conformance suite every master-key backend passes,
// so that a keyring behaves the same whichever KMS holds its master keys.
//
// A backend's test supplies a Harness that makes master keys (against a
// temp file, moto, or an in-process fake) and calls RunConformance:
//
//	func TestConformance(t *testing.T) {
//		kmstest.RunConformance(t, kmstest.Harness{NewKey: func(t *testing.T) kms.MasterKey { ... }})
//	}
//
// The suite checks behaviour, not formats: round trips, randomised wraps,
// key and context binding, robustness against malformed input, prompt
// cancellation, safe concurrent use, and that no error text ever carries
// key material.
package kmstest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fieldcrypt/fieldcrypt/keyring/kms"
)

// Harness adapts a backend to the suite.
type Harness struct {
	// NewKey returns a fresh master key, distinct from every key it
	// returned before. Resources it creates are released with t.Cleanup.
	NewKey func(t *testing.T) kms.MasterKey
}

// CancelDeadline is how fast an operation under an already cancelled
// context must return.
const CancelDeadline = 2 * time.Second

// RunConformance runs the suite as subtests of t.
func RunConformance(t *testing.T, h Harness) {
	t.Helper()
	require.NotNil(t, h.NewKey, "Harness.NewKey")
	t.Run("URI", func(t *testing.T) { testURI(t, h) })
	t.Run("RoundTrip", func(t *testing.T) { testRoundTrip(t, h) })
	t.Run("WrapsDiffer", func(t *testing.T) { testWrapsDiffer(t, h) })
	t.Run("DistinctMasterKeys", func(t *testing.T) { testDistinctMasterKeys(t, h) })
	t.Run("WrongContext", func(t *testing.T) { testWrongContext(t, h) })
	t.Run("InvalidWrapInput", func(t *testing.T) { testInvalidWrapInput(t, h) })
	t.Run("MalformedWrapped", func(t *testing.T) { testMalformed(t, h) })
	t.Run("CancelledContext", func(t *testing.T) { testCancelled(t, h) })
	t.Run("Concurrent", func(t *testing.T) { testConcurrent(t, h) })
	t.Run("Close", func(t *testing.T) { require.NoError(t, h.NewKey(t).Close()) })
}

// RandomKey returns n random bytes.
func RandomKey(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return b
}

var sampleEC = kms.EncryptionContext{"classification": "critical", "kek": "v3", "tenant": "acme"}

func testURI(t *testing.T, h Harness) {
	k := h.NewKey(t)
	uri := k.URI()
	require.NotEmpty(t, uri)
	scheme, err := kms.Scheme(uri)
	require.NoError(t, err)
	assert.NotEmpty(t, scheme)
}

func testRoundTrip(t *testing.T, h Harness) {
	k := h.NewKey(t)
	ctx := context.Background()
	cases := []struct {
		name string
		size int
		ec   kms.EncryptionContext
	}{
		{"32B/nil-context", 32, nil},
		{"32B/empty-context", 32, kms.EncryptionContext{}},
		{"32B/context", 32, sampleEC},
		{"1B", 1, sampleEC},
		{"16B", 16, sampleEC},
		{"64B", 64, sampleEC},
		{"max", kms.MaxKeySize, sampleEC},
		{"unicode-context", 32, kms.EncryptionContext{"clé": "värde ✓"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			key := RandomKey(t, tc.size)
			wrapped, err := k.Wrap(ctx, key, tc.ec)
			require.NoError(t, err)
			if len(key) >= 16 { // a short key may occur in random bytes by chance
				assert.False(t, bytes.Contains(wrapped, key), "wrapped output contains the plaintext key")
			}
			got, err := k.Unwrap(ctx, wrapped, tc.ec)
			require.NoError(t, err)
			assert.Equal(t, key, got)
		})
	}
	t.Run("nil-and-empty-context-equivalent", func(t *testing.T) {
		key := RandomKey(t, 32)
		wrapped, err := k.Wrap(ctx, key, nil)
		require.NoError(t, err)
		got, err := k.Unwrap(ctx, wrapped, kms.EncryptionContext{})
		require.NoError(t, err)
		assert.Equal(t, key, got)
	})
}

func testWrapsDiffer(t *testing.T, h Harness) {
	k := h.NewKey(t)
	ctx := context.Background()
	key := RandomKey(t, 32)
	w1, err := k.Wrap(ctx, key, sampleEC)
	require.NoError(t, err)
	w2, err := k.Wrap(ctx, key, sampleEC)
	require.NoError(t, err)
	assert.NotEqual(t, w1, w2, "two wraps of the same key must differ (randomised encryption)")
	for _, w := range [][]byte{w1, w2} {
		got, err := k.Unwrap(ctx, w, sampleEC)
		require.NoError(t, err)
		assert.Equal(t, key, got)
	}
}

func testDistinctMasterKeys(t *testing.T, h Harness) {
	a, b := h.NewKey(t), h.NewKey(t)
	require.NotEqual(t, a.URI(), b.URI(), "NewKey must return distinct keys")
	ctx := context.Background()
	key := RandomKey(t, 32)
	wa, err := a.Wrap(ctx, key, sampleEC)
	require.NoError(t, err)
	wb, err := b.Wrap(ctx, key, sampleEC)
	require.NoError(t, err)
	assert.NotEqual(t, wa, wb)

	_, err = b.Unwrap(ctx, wa, sampleEC)
	requireRejected(t, err, key, wa)
	_, err = a.Unwrap(ctx, wb, sampleEC)
	requireRejected(t, err, key, wb)
}

// requireRejected checks the error of unwrapping something under the wrong
// master key: ErrAuthentication, or ErrAccessDenied for KMSes (AWS) that
// report a ciphertext naming another key as a key the caller may not use.
func requireRejected(t *testing.T, err error, secrets ...[]byte) {
	t.Helper()
	require.Error(t, err)
	assert.True(t, errors.Is(err, kms.ErrAuthentication) || errors.Is(err, kms.ErrAccessDenied),
		"want ErrAuthentication or ErrAccessDenied, got %v", err)
	RequireNoSecrets(t, err, secrets...)
}

func testWrongContext(t *testing.T, h Harness) {
	k := h.NewKey(t)
	ctx := context.Background()
	key := RandomKey(t, 32)
	wrapped, err := k.Wrap(ctx, key, sampleEC)
	require.NoError(t, err)
	wrappedNil, err := k.Wrap(ctx, key, nil)
	require.NoError(t, err)

	cases := []struct {
		name    string
		wrapped []byte
		ec      kms.EncryptionContext
	}{
		{"value-changed", wrapped, kms.EncryptionContext{"classification": "critical", "kek": "v4", "tenant": "acme"}},
		{"entry-added", wrapped, kms.EncryptionContext{"classification": "critical", "kek": "v3", "tenant": "acme", "x": "y"}},
		{"entry-removed", wrapped, kms.EncryptionContext{"classification": "critical", "kek": "v3"}},
		{"key-renamed", wrapped, kms.EncryptionContext{"classification": "critical", "kek": "v3", "tenantx": "acme"}},
		{"none", wrapped, nil},
		{"added-to-none", wrappedNil, sampleEC},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := k.Unwrap(ctx, tc.wrapped, tc.ec)
			require.Error(t, err)
			assert.ErrorIs(t, err, kms.ErrAuthentication)
			RequireNoSecrets(t, err, key, tc.wrapped)
		})
	}
}

func testInvalidWrapInput(t *testing.T, h Harness) {
	k := h.NewKey(t)
	ctx := context.Background()
	big := RandomKey(t, kms.MaxKeySize+1)
	cases := []struct {
		name string
		key  []byte
		ec   kms.EncryptionContext
	}{
		{"nil-key", nil, sampleEC},
		{"empty-key", []byte{}, sampleEC},
		{"oversize-key", big, sampleEC},
		{"empty-context-key", RandomKey(t, 32), kms.EncryptionContext{"": "x"}},
		{"empty-context-value", RandomKey(t, 32), kms.EncryptionContext{"x": ""}},
		{"non-utf8-context", RandomKey(t, 32), kms.EncryptionContext{"x": "\xff\xfe"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := k.Wrap(ctx, tc.key, tc.ec)
			require.Error(t, err)
			assert.ErrorIs(t, err, kms.ErrInvalidInput)
			if len(tc.key) > 0 {
				RequireNoSecrets(t, err, tc.key)
			}
		})
	}
}

func testMalformed(t *testing.T, h Harness) {
	k := h.NewKey(t)
	ctx := context.Background()
	key := RandomKey(t, 32)
	wrapped, err := k.Wrap(ctx, key, sampleEC)
	require.NoError(t, err)
	n := len(wrapped)

	flip := func(i int) []byte {
		b := bytes.Clone(wrapped)
		b[i] ^= 0x01
		return b
	}
	cases := map[string][]byte{
		"nil":              nil,
		"empty":            {},
		"one-byte":         wrapped[:1],
		"truncated-half":   wrapped[:n/2],
		"truncated-by-one": wrapped[:n-1],
		"extended-by-one":  append(bytes.Clone(wrapped), 0),
		"flip-first":       flip(0),
		"flip-middle":      flip(n / 2),
		"flip-last":        flip(n - 1),
		"zeros":            make([]byte, n),
		"random":           RandomKey(t, n),
		"huge":             RandomKey(t, 1<<20),
		"huge-prefixed":    append(bytes.Clone(wrapped), make([]byte, 64<<10)...),
	}
	for name, in := range cases {
		t.Run(name, func(t *testing.T) {
			var got []byte
			var err error
			require.NotPanics(t, func() { got, err = k.Unwrap(ctx, in, sampleEC) })
			require.Error(t, err, "malformed input must not unwrap")
			assert.Nil(t, got)
			assert.True(t, errors.Is(err, kms.ErrAuthentication) || errors.Is(err, kms.ErrInvalidInput) ||
				errors.Is(err, kms.ErrAccessDenied),
				"want ErrAuthentication or ErrInvalidInput (or ErrAccessDenied for a ciphertext naming a key the caller cannot use), got %v", err)
			assert.NotErrorIs(t, err, kms.ErrUnavailable, "malformed input is not a transient failure")
			RequireNoSecrets(t, err, key, wrapped)
		})
	}
	// The original still unwraps: nothing above altered it in place.
	got, err := k.Unwrap(ctx, wrapped, sampleEC)
	require.NoError(t, err)
	assert.Equal(t, key, got)
}

func testCancelled(t *testing.T, h Harness) {
	k := h.NewKey(t)
	key := RandomKey(t, 32)
	wrapped, err := k.Wrap(context.Background(), key, sampleEC)
	require.NoError(t, err)

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	check := func(t *testing.T, op func() error) {
		start := time.Now()
		err := op()
		elapsed := time.Since(start)
		require.Error(t, err)
		assert.Less(t, elapsed, CancelDeadline, "cancelled call took %v", elapsed)
		assert.True(t, errors.Is(err, context.Canceled) || errors.Is(err, kms.ErrUnavailable),
			"want context.Canceled or ErrUnavailable, got %v", err)
		RequireNoSecrets(t, err, key, wrapped)
	}
	t.Run("wrap", func(t *testing.T) {
		check(t, func() error { _, err := k.Wrap(ctx, key, sampleEC); return err })
	})
	t.Run("unwrap", func(t *testing.T) {
		check(t, func() error { _, err := k.Unwrap(ctx, wrapped, sampleEC); return err })
	})
	t.Run("deadline-exceeded", func(t *testing.T) {
		dctx, dcancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
		defer dcancel()
		start := time.Now()
		_, err := k.Unwrap(dctx, wrapped, sampleEC)
		require.Error(t, err)
		assert.Less(t, time.Since(start), CancelDeadline)
		assert.True(t, errors.Is(err, context.DeadlineExceeded) || errors.Is(err, kms.ErrUnavailable),
			"want context.DeadlineExceeded or ErrUnavailable, got %v", err)
	})
}

func testConcurrent(t *testing.T, h Harness) {
	k := h.NewKey(t)
	ctx := context.Background()
	const workers, rounds = 4, 3
	var wg sync.WaitGroup
	errs := make(chan error, workers*rounds)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := 0; r < rounds; r++ {
				key := make([]byte, 32)
				_, _ = rand.Read(key)
				wrapped, err := k.Wrap(ctx, key, sampleEC)
				if err == nil {
					var got []byte
					got, err = k.Unwrap(ctx, wrapped, sampleEC)
					if err == nil && !bytes.Equal(got, key) {
						err = errors.New("round trip returned a different key")
					}
				}
				if err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// RequireNoSecrets fails t if err's text contains any secret: raw (whole),
// or the start of its hex (either case), base64 (standard or URL) or %v
// encoding (so a truncated dump is caught too). Secrets shorter than 8
// bytes are not checked: too short to tell a leak from chance. (Raw
// prefixes are not checked: some wrapped formats, moto's among them, start
// with the key ID in clear, which error messages legitimately name.)
func RequireNoSecrets(t testing.TB, err error, secrets ...[]byte) {
	t.Helper()
	if err == nil {
		return
	}
	msg := err.Error()
	for _, s := range secrets {
		if len(s) < 8 {
			continue
		}
		if strings.Contains(msg, string(s)) {
			t.Fatalf("error text contains a secret (raw): %q", msg)
		}
		forms := map[string]string{
			"hex":       hex.EncodeToString(s),
			"HEX":       strings.ToUpper(hex.EncodeToString(s)),
			"base64":    base64.StdEncoding.EncodeToString(s),
			"base64url": base64.URLEncoding.EncodeToString(s),
			"decimal":   strings.TrimSuffix(fmt.Sprint(s[:8]), "]"), // %v of a []byte
		}
		for form, v := range forms {
			if n := min(len(v), 16); strings.Contains(msg, v[:n]) {
				t.Fatalf("error text contains a secret (%s form): %q", form, msg)
			}
		}
	}
}
