package backup

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/fieldcrypt/fieldcrypt/keyring/kms"
)

// testMasterKey is an in-memory master key for tests that wraps exactly as
// the local backend (keyring/kms/localkms) does: 0x01 || 12-byte nonce ||
// AES-256-GCM ciphertext || 16-byte tag, with AAD = ec.Canonical(). It is
// self-contained so these tests never depend on a backend package;
// TestWorkedExampleOpensWithLocalKMS checks that the two agree.
type testMasterKey struct {
	uri  string
	aead cipher.AEAD

	mu   sync.Mutex
	rand io.Reader // nonce source; deterministic for vectors
}

const testKeyURI = "local-test://backup-vectors"

func newTestMasterKey(uri string, key []byte, rnd io.Reader) *testMasterKey {
	block, err := aes.NewCipher(key)
	if err != nil {
		panic(err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		panic(err)
	}
	if rnd == nil {
		rnd = rand.Reader
	}
	return &testMasterKey{uri: uri, aead: aead, rand: rnd}
}

// randomMasterKey returns a fresh random test master key.
func randomMasterKey(uri string) *testMasterKey {
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	return newTestMasterKey(uri, key, nil)
}

// vectorMasterKey returns the fixed master key the test vectors use; its
// bytes are in testdata/test-master-key.hex.
func vectorMasterKey(t testing.TB, rnd io.Reader) *testMasterKey {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "test-master-key.hex"))
	if err != nil {
		t.Fatal(err)
	}
	key, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(key) != 32 {
		t.Fatalf("testdata/test-master-key.hex: want 64 hex digits (%v)", err)
	}
	return newTestMasterKey(testKeyURI, key, rnd)
}

func (k *testMasterKey) URI() string { return k.uri }

func (k *testMasterKey) Close() error { return nil }

func (k *testMasterKey) Wrap(ctx context.Context, key []byte, ec kms.EncryptionContext) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, &kms.Error{Op: "wrap", URI: k.uri, Err: fmt.Errorf("%w: %w", kms.ErrUnavailable, err)}
	}
	if len(key) == 0 || len(key) > 4096 {
		return nil, &kms.Error{Op: "wrap", URI: k.uri, Err: kms.ErrInvalidInput}
	}
	out := make([]byte, 1+12, 1+12+len(key)+16)
	out[0] = 0x01
	k.mu.Lock()
	_, err := io.ReadFull(k.rand, out[1:])
	k.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return k.aead.Seal(out, out[1:], key, ec.Canonical()), nil
}

func (k *testMasterKey) Unwrap(ctx context.Context, wrapped []byte, ec kms.EncryptionContext) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, &kms.Error{Op: "unwrap", URI: k.uri, Err: fmt.Errorf("%w: %w", kms.ErrUnavailable, err)}
	}
	if len(wrapped) < 1+12+16 || wrapped[0] != 0x01 {
		return nil, &kms.Error{Op: "unwrap", URI: k.uri, Err: kms.ErrAuthentication}
	}
	key, err := k.aead.Open(nil, wrapped[1:13], wrapped[13:], ec.Canonical())
	if err != nil {
		return nil, &kms.Error{Op: "unwrap", URI: k.uri, Err: kms.ErrAuthentication}
	}
	return key, nil
}

// openerFor returns an opener that knows only the given keys.
func openerFor(keys ...kms.MasterKey) kms.Opener {
	return kms.OpenerFunc(func(_ context.Context, uri string) (kms.MasterKey, error) {
		for _, k := range keys {
			if k.URI() == uri {
				return k, nil
			}
		}
		return nil, &kms.Error{Op: "open", URI: uri, Err: kms.ErrKeyNotFound}
	})
}

// detReader is a deterministic byte stream: the AES-256-CTR keystream under
// SHA-256(seed) with a zero IV. Fast (GB/s), so it also feeds the
// multi-GiB streaming test.
type detReader struct{ s cipher.Stream }

func newDetReader(seed string) *detReader {
	key := sha256.Sum256([]byte(seed))
	block, _ := aes.NewCipher(key[:])
	return &detReader{s: cipher.NewCTR(block, make([]byte, aes.BlockSize))}
}

func (r *detReader) Read(p []byte) (int, error) {
	clear(p)
	r.s.XORKeyStream(p, p)
	return len(p), nil
}

// detBytes returns n deterministic bytes for seed.
func detBytes(seed string, n int) []byte {
	b := make([]byte, n)
	_, _ = newDetReader(seed).Read(b)
	return b
}
