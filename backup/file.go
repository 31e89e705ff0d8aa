package backup

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/fieldcrypt/fieldcrypt/keyring/kms"
)

// DecryptFile decrypts a backup from src into the file at path, all or
// nothing: it writes a temporary file (mode 0600) in path's directory,
// syncs it, and renames it to path only if the whole backup authenticated.
// On any error the temporary file is removed and path is left untouched.
func DecryptFile(ctx context.Context, path string, src io.Reader, opener kms.Opener, opts DecryptOptions) (res *Result, err error) {
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
	if res, err = Decrypt(ctx, tmp, src, opener, opts); err != nil {
		return nil, err
	}
	if err = tmp.Sync(); err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	if err = tmp.Close(); err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	return res, nil
}
