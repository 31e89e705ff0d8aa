//go:build unix

package localkms_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fieldcrypt/fieldcrypt/keyring/kms"
	"github.com/fieldcrypt/fieldcrypt/keyring/kms/localkms"
)

// requireInsecure checks that err is the permission error for path, names
// what it should, and carries no key bytes.
func requireInsecure(t *testing.T, err error, path, mentions string) {
	t.Helper()
	require.Error(t, err)
	assert.ErrorIs(t, err, localkms.ErrInsecureKeyFile)
	assert.ErrorIs(t, err, kms.ErrInvalidInput)
	assert.Contains(t, err.Error(), path)
	assert.Contains(t, err.Error(), mentions)
	if data, rerr := os.ReadFile(path); rerr == nil {
		b64 := strings.TrimSpace(strings.TrimPrefix(string(data), localkms.FilePrefix))
		assert.NotContains(t, err.Error(), b64)
	}
}

// createIn creates a key file in a new private directory and returns its
// path.
func createIn(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "k.key")
	_, err := localkms.Create(path)
	require.NoError(t, err)
	return path
}

func TestOpenRefusesAFileOfAnotherUser(t *testing.T) {
	path := createIn(t)
	me := os.Geteuid()
	other := me + 4242

	restore := localkms.SetEUID(other)
	_, err := localkms.Open(path)
	restore()
	requireInsecure(t, err, path, "owned by uid")

	_, err = localkms.Open(path)
	require.NoError(t, err, "its owner opens it")

	if me != 0 {
		restore := localkms.SetEUID(0)
		defer restore()
	}
	_, err = localkms.Open(path)
	require.NoError(t, err, "root opens any")
}

func TestOpenRefusesAWritableDirectory(t *testing.T) {
	tests := []struct {
		mode fs.FileMode
		ok   bool
	}{
		{0o700, true},
		{0o750, true},
		{0o755, true},
		{0o500, true},
		{0o770, false},
		{0o730, false},
		{0o777, false},
		{0o702, false},
		{0o757, false},
		{0o777 | fs.ModeSticky, true}, // like /tmp: owned by this user
		{0o770 | fs.ModeSticky, true},
	}
	for _, tc := range tests {
		t.Run(tc.mode.String(), func(t *testing.T) {
			path := createIn(t)
			dir := filepath.Dir(path)
			require.NoError(t, os.Chmod(dir, tc.mode))
			t.Cleanup(func() { _ = os.Chmod(dir, 0o700) })
			_, err := localkms.Open(path)
			if tc.ok {
				require.NoError(t, err)
				return
			}
			requireInsecure(t, err, path, "directory "+dir)

			// Create refuses the directory before writing anything.
			fresh := filepath.Join(dir, "new.key")
			_, err = localkms.Create(fresh)
			requireInsecure(t, err, fresh, "writable by group or others")
			assert.NoFileExists(t, fresh)
		})
	}
}

func TestOpenRefusesAStickyDirectoryOfAnotherUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give the directory to another user (CI runs as root)")
	}
	path := createIn(t)
	dir := filepath.Dir(path)
	require.NoError(t, os.Chmod(dir, 0o777|fs.ModeSticky))
	require.NoError(t, os.Chown(dir, 4242, 4242))
	_, err := localkms.Open(path)
	requireInsecure(t, err, path, "directory "+dir)
}

func TestOpenChecksBothDirectoriesOfASymlink(t *testing.T) {
	t.Run("link in a writable directory", func(t *testing.T) {
		target := createIn(t)
		open := t.TempDir()
		require.NoError(t, os.Chmod(open, 0o777))
		link := filepath.Join(open, "k.key")
		require.NoError(t, os.Symlink(target, link))
		_, err := localkms.Open(link)
		requireInsecure(t, err, link, "directory "+open)
	})
	t.Run("target in a writable directory", func(t *testing.T) {
		target := createIn(t)
		require.NoError(t, os.Chmod(filepath.Dir(target), 0o777))
		link := filepath.Join(t.TempDir(), "k.key")
		require.NoError(t, os.Symlink(target, link))
		_, err := localkms.Open(link)
		requireInsecure(t, err, link, "directory "+filepath.Dir(target))
	})
	t.Run("both private", func(t *testing.T) {
		target := createIn(t)
		link := filepath.Join(t.TempDir(), "k.key")
		require.NoError(t, os.Symlink(target, link))
		_, err := localkms.Open(link)
		require.NoError(t, err)
	})
}
