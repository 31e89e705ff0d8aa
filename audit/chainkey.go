package audit

import (
	"context"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"

	"github.com/fieldcrypt/fieldcrypt/keyring/kms"
)

// logKeySize is the size of a log key: 32 random bytes, never stored in
// clear (the header holds it wrapped by the master key).
const logKeySize = 32

// chainKeys are the keys derived from one log key: one MACs records, the
// other checkpoints, so a checkpoint can never pass for a record.
type chainKeys struct {
	record     []byte
	checkpoint []byte
}

// keyContext is the encryption context the log key is wrapped under: the
// KMS authenticates the purpose and the log id, so a wrapped key moved
// to another log's header does not unwrap.
func keyContext(logID string) kms.EncryptionContext {
	return kms.EncryptionContext{"purpose": "fieldcrypt-audit-chain", "log": logID}
}

func deriveKeys(key []byte) (chainKeys, error) {
	rec, err := hkdf.Key(sha256.New, key, nil, chainFormat+" record", 32)
	if err != nil {
		return chainKeys{}, err
	}
	cp, err := hkdf.Key(sha256.New, key, nil, chainFormat+" checkpoint", 32)
	if err != nil {
		return chainKeys{}, err
	}
	return chainKeys{record: rec, checkpoint: cp}, nil
}

// newLogKey creates a log id and key and wraps the key under mk.
func newLogKey(ctx context.Context, mk kms.MasterKey) (logID string, keys chainKeys, wrapped []byte, err error) {
	var id [16]byte
	if _, err := rand.Read(id[:]); err != nil {
		return "", chainKeys{}, nil, err
	}
	logID = hex.EncodeToString(id[:])
	key := make([]byte, logKeySize)
	if _, err := rand.Read(key); err != nil {
		return "", chainKeys{}, nil, err
	}
	defer clear(key)
	wrapped, err = mk.Wrap(ctx, key, keyContext(logID))
	if err != nil {
		return "", chainKeys{}, nil, fmt.Errorf("audit: wrap the key of a new log under %s: %w", mk.URI(), err)
	}
	keys, err = deriveKeys(key)
	return logID, keys, wrapped, err
}

// unwrapLogKey unwraps a header's key.
func unwrapLogKey(ctx context.Context, mk kms.MasterKey, logID string, wrapped []byte) (chainKeys, error) {
	key, err := mk.Unwrap(ctx, wrapped, keyContext(logID))
	if err != nil {
		return chainKeys{}, fmt.Errorf("audit: unwrap the key of log %s under %s: %w", logID, mk.URI(), err)
	}
	defer clear(key)
	if len(key) != logKeySize {
		return chainKeys{}, fmt.Errorf("audit: the key of log %s is %d bytes, want %d", logID, len(key), logKeySize)
	}
	return deriveKeys(key)
}

// recordMAC computes a record's MAC with h (an HMAC under the record
// key, reset here) and appends it to out; buf is scratch space, returned
// for reuse.
func recordMAC(h hash.Hash, r *record, buf, out []byte) ([]byte, []byte) {
	buf = r.appendMACInput(buf[:0])
	h.Reset()
	h.Write(buf)
	return h.Sum(out), buf
}

func newRecordHMAC(k chainKeys) hash.Hash { return hmac.New(sha256.New, k.record) }
