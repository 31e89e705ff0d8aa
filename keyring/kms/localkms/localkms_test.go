package localkms_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fieldcrypt/fieldcrypt/keyring/kms"
	"github.com/fieldcrypt/fieldcrypt/keyring/kms/kmstest"
	"github.com/fieldcrypt/fieldcrypt/keyring/kms/localkms"
)

func newKey(t *testing.T) kms.MasterKey {
	t.Helper()
	k, err := localkms.Create(filepath.Join(t.TempDir(), "master.key"))
	require.NoError(t, err)
	return k
}

func TestConformance(t *testing.T) {
	kmstest.RunConformance(t, kmstest.Harness{NewKey: newKey})
}

func TestCreateMode0600(t *testing.T) {
	path := filepath.Join(t.TempDir(), "k.key") // before the umask: the directory must stay private
	old := setUmask(0)                          // a permissive umask must not leak into the file mode
	defer setUmask(old)
	_, err := localkms.Create(path)
	require.NoError(t, err)
	fi, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, fs.FileMode(0o600), fi.Mode().Perm())

	data, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(string(data), localkms.FilePrefix))
	assert.True(t, strings.HasSuffix(string(data), "\n"))
	assert.Equal(t, 1, strings.Count(string(data), "\n"))
}

func TestCreateNeverOverwrites(t *testing.T) {
	path := filepath.Join(t.TempDir(), "k.key")
	require.NoError(t, os.WriteFile(path, []byte("precious"), 0o600))
	_, err := localkms.Create(path)
	require.Error(t, err)
	assert.ErrorIs(t, err, fs.ErrExist)
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, "precious", string(data))
}

func TestCreateThenOpenSameKey(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "k.key")
	created, err := localkms.Create(path)
	require.NoError(t, err)
	wrapped, err := created.Wrap(ctx, []byte("0123456789abcdef0123456789abcdef"), nil)
	require.NoError(t, err)

	for _, uri := range []string{localkms.URI(path), "local://" + path} {
		k, err := kms.Open(ctx, uri)
		require.NoError(t, err, uri)
		assert.Equal(t, uri, k.URI())
		got, err := k.Unwrap(ctx, wrapped, nil)
		require.NoError(t, err)
		assert.Equal(t, "0123456789abcdef0123456789abcdef", string(got))
	}
}

func TestOpenRelativeURI(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	require.NoError(t, os.Mkdir("keys", 0o700))
	_, err := localkms.Create(filepath.Join("keys", "dev.key"))
	require.NoError(t, err)
	k, err := kms.Open(context.Background(), "local://keys/dev.key")
	require.NoError(t, err)
	assert.Equal(t, "local://keys/dev.key", k.URI())
}

func TestOpenRefusesInsecureModes(t *testing.T) {
	for _, mode := range []fs.FileMode{0o644, 0o640, 0o604, 0o660, 0o606, 0o666, 0o777, 0o610} {
		t.Run(mode.String(), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "k.key")
			_, err := localkms.Create(path)
			require.NoError(t, err)
			secret, err := os.ReadFile(path)
			require.NoError(t, err)
			require.NoError(t, os.Chmod(path, mode))

			_, err = localkms.Open(path)
			require.Error(t, err)
			assert.ErrorIs(t, err, localkms.ErrInsecureKeyFile)
			assert.ErrorIs(t, err, kms.ErrInvalidInput)
			assert.Contains(t, err.Error(), path)
			assert.Contains(t, err.Error(), "0600")
			assert.NotContains(t, err.Error(), strings.TrimPrefix(strings.TrimSpace(string(secret)), localkms.FilePrefix))
		})
	}
	t.Run("0400-is-fine", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "k.key")
		_, err := localkms.Create(path)
		require.NoError(t, err)
		require.NoError(t, os.Chmod(path, 0o400))
		_, err = localkms.Open(path)
		require.NoError(t, err)
	})
}

func TestOpenRefusesBadFiles(t *testing.T) {
	const b64of32 = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=" // bytes 0..31
	cases := []struct {
		name    string
		content string
		ok      bool
	}{
		{"valid", localkms.FilePrefix + b64of32 + "\n", true},
		{"valid-no-newline", localkms.FilePrefix + b64of32, true},
		{"valid-crlf", localkms.FilePrefix + b64of32 + "\r\n", true},
		{"empty", "", false},
		{"raw-32-bytes", strings.Repeat("k", 32), false},
		{"no-prefix", b64of32 + "\n", false},
		{"wrong-version", "fieldcrypt-local-master-key/v2:" + b64of32 + "\n", false},
		{"short-key", localkms.FilePrefix + "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHg==\n", false},
		{"long-key", localkms.FilePrefix + "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8g\n", false},
		{"bad-base64", localkms.FilePrefix + "!!!!" + b64of32[4:] + "\n", false},
		{"unpadded", localkms.FilePrefix + strings.TrimRight(b64of32, "=") + "\n", false},
		{"two-lines", localkms.FilePrefix + b64of32 + "\n" + "extra\n", false},
		{"split-key", localkms.FilePrefix + b64of32[:20] + "\n" + b64of32[20:] + "\n", false},
		{"huge", localkms.FilePrefix + strings.Repeat("A", 1<<20), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "k.key")
			require.NoError(t, os.WriteFile(path, []byte(tc.content), 0o600))
			_, err := localkms.Open(path)
			if tc.ok {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.ErrorIs(t, err, kms.ErrInvalidInput)
			assert.NotContains(t, err.Error(), b64of32[:16])
		})
	}
	t.Run("missing", func(t *testing.T) {
		_, err := localkms.Open(filepath.Join(t.TempDir(), "nope.key"))
		assert.ErrorIs(t, err, kms.ErrKeyNotFound)
		assert.ErrorIs(t, err, fs.ErrNotExist)
	})
	t.Run("directory", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "d")
		require.NoError(t, os.Mkdir(dir, 0o700))
		_, err := localkms.Open(dir)
		assert.ErrorIs(t, err, kms.ErrInvalidInput)
	})
}

func TestPathFromURI(t *testing.T) {
	cases := []struct {
		uri, path string
		ok        bool
	}{
		{"local:///var/lib/fieldcrypt/dev.key", "/var/lib/fieldcrypt/dev.key", true},
		{"local://rel/dev.key", "rel/dev.key", true},
		{"local://dev.key", "dev.key", true},
		{"local://", "", false},
		{"local:/x", "", false},
		{"file:///x", "", false},
		{"local://a\x00b", "", false},
	}
	for _, tc := range cases {
		t.Run(tc.uri, func(t *testing.T) {
			path, err := localkms.PathFromURI(tc.uri)
			if !tc.ok {
				assert.ErrorIs(t, err, kms.ErrInvalidURI)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.path, path)
		})
	}
	_, err := kms.Open(context.Background(), "local://")
	assert.ErrorIs(t, err, kms.ErrInvalidURI)
}

func TestUnwrapErrorsAreTyped(t *testing.T) {
	k := newKey(t)
	_, err := k.Unwrap(context.Background(), []byte{1, 2, 3}, nil)
	var kerr *kms.Error
	require.True(t, errors.As(err, &kerr))
	assert.Equal(t, "unwrap", kerr.Op)
	assert.Equal(t, k.URI(), kerr.URI)
}
