package backup

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/fieldcrypt/fieldcrypt/keyring/kms"
)

// EncryptFile encrypts src into a new file at path (mode 0600), all or
// nothing: it writes a temporary file in path's directory, syncs it, and
// links it to path only if the whole stream was encrypted. It never
// overwrites an existing file (errors.Is(err, fs.ErrExist)); on any error
// path is left as it was.
func EncryptFile(ctx context.Context, path string, src io.Reader, mk kms.MasterKey, opts EncryptOptions) (res *Result, err error) {
	return writeFile(path, false, func(w io.Writer) (*Result, error) { return Encrypt(ctx, w, src, mk, opts) })
}

// DecryptFile decrypts a backup from src into the file at path, all or
// nothing: it writes a temporary file (mode 0600) in path's directory,
// syncs it, and renames it to path only if the whole backup authenticated.
// On any error the temporary file is removed and path is left untouched.
func DecryptFile(ctx context.Context, path string, src io.Reader, opener kms.Opener, opts DecryptOptions) (res *Result, err error) {
	return writeFile(path, true, func(w io.Writer) (*Result, error) { return Decrypt(ctx, w, src, opener, opts) })
}

// writeFile runs write into a temporary file beside path and moves it to
// path on success: by rename (replace) or by link, which fails if path
// exists.
func writeFile(path string, replace bool, write func(io.Writer) (*Result, error)) (res *Result, err error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".partial-*")
	if err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if res, err = write(tmp); err != nil {
		return nil, err
	}
	if err = tmp.Sync(); err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	if err = tmp.Close(); err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	if replace {
		err = os.Rename(tmp.Name(), path)
	} else if err = os.Link(tmp.Name(), path); err == nil {
		err = os.Remove(tmp.Name())
	}
	if err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	return res, nil
}
