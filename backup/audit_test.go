package backup

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fieldcrypt/fieldcrypt/audit"
	"github.com/fieldcrypt/fieldcrypt/envelope"
	"github.com/fieldcrypt/fieldcrypt/keyring/kms"
)

// TestOperationsRecordTheirEvents: Encrypt, Decrypt and Verify record
// their own audit events (callers add none), failures included.
func TestOperationsRecordTheirEvents(t *testing.T) {
	ctx := context.Background()
	mk := randomMasterKey("local:///k")
	opener := kms.OpenerFunc(func(context.Context, string) (kms.MasterKey, error) { return mk, nil })
	s := &audit.Memory{}
	var buf bytes.Buffer
	res, err := Encrypt(ctx, &buf, bytes.NewReader([]byte("payload")), mk, EncryptOptions{Class: envelope.High, Audit: s})
	require.NoError(t, err)
	_, err = Verify(ctx, bytes.NewReader(buf.Bytes()), opener, DecryptOptions{Audit: s})
	require.NoError(t, err)
	var out bytes.Buffer
	_, err = Decrypt(ctx, &out, bytes.NewReader(buf.Bytes()), opener, DecryptOptions{Audit: s})
	require.NoError(t, err)
	tampered := bytes.Clone(buf.Bytes())
	tampered[len(tampered)-1] ^= 1
	_, err = Verify(ctx, bytes.NewReader(tampered), opener, DecryptOptions{Audit: s})
	require.ErrorIs(t, err, ErrAuthentication)

	events := s.Events()
	require.Len(t, events, 4)
	want := []audit.Type{audit.BackupEncrypted, audit.BackupVerified, audit.BackupDecrypted, audit.BackupVerified}
	for i, e := range events {
		assert.Equal(t, want[i], e.Type)
		if i == 3 {
			break // a backup that fails authentication: its header is not trusted
		}
		assert.Equal(t, "high", e.Class)
		assert.Equal(t, "local:///k", e.MasterKeyURI)
		assert.Equal(t, res.Header.ExportID.String(), e.Job)
	}
	assert.Equal(t, int64(7), events[0].Counts["plaintext_bytes"])
	assert.Equal(t, audit.Error, events[3].Outcome)
	assert.NotEmpty(t, events[3].Error)
}

// TestEncryptFile: the file appears only when the whole stream is
// encrypted, and an existing file is never replaced.
func TestEncryptFile(t *testing.T) {
	ctx := context.Background()
	mk := randomMasterKey("local:///k")
	dir := t.TempDir()
	path := filepath.Join(dir, "out.fcb")
	_, err := EncryptFile(ctx, path, bytes.NewReader([]byte("payload")), mk, EncryptOptions{Class: envelope.High})
	require.NoError(t, err)
	fi, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	before, err := os.ReadFile(path)
	require.NoError(t, err)

	_, err = EncryptFile(ctx, path, bytes.NewReader([]byte("other")), mk, EncryptOptions{Class: envelope.High})
	require.ErrorIs(t, err, fs.ErrExist)
	after, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, before, after)

	// a failing encryption leaves nothing behind
	_, err = EncryptFile(ctx, filepath.Join(dir, "bad.fcb"), bytes.NewReader([]byte("x")), mk, EncryptOptions{})
	require.Error(t, err)
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Len(t, entries, 1)
}
