//go:build unix

package localkms

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/fieldcrypt/fieldcrypt/keyring/kms"
)

// geteuid is os.Geteuid; tests replace it to check the rules of users other
// than the one running them.
var geteuid = os.Geteuid

// insecure wraps the sentinels every permission error carries.
func insecure(format string, args ...any) error {
	return fmt.Errorf("%w: %w: "+format, append([]any{kms.ErrInvalidInput, ErrInsecureKeyFile}, args...)...)
}

func ownerOf(fi fs.FileInfo) (uint32, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return st.Uid, true
}

// checkOwner refuses a key file that the process's effective user does not
// own, unless that user is root.
func checkOwner(path string, fi fs.FileInfo) error {
	euid := geteuid()
	if euid == 0 {
		return nil
	}
	uid, ok := ownerOf(fi)
	if !ok {
		return insecure("cannot tell who owns %s", path)
	}
	if uid != uint32(euid) {
		return insecure("%s is owned by uid %d, not by this process's user (uid %d); chown it or run as its owner", path, uid, euid)
	}
	return nil
}

// checkDirs refuses a key file path whose directory (and, for a symbolic
// link, whose target's directory) group or others may write, unless it is
// sticky and owned by root or this process's user.
func checkDirs(path string) error {
	dirs := []string{filepath.Dir(path)}
	if target, err := filepath.EvalSymlinks(path); err == nil {
		if d := filepath.Dir(target); d != dirs[0] {
			dirs = append(dirs, d)
		}
	}
	for _, dir := range dirs {
		if err := checkDir(path, dir); err != nil {
			return err
		}
	}
	return nil
}

func checkDir(path, dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("directory of key file %s: %w", path, err)
	}
	mode := fi.Mode()
	if mode.Perm()&0o022 == 0 {
		return nil
	}
	if mode&fs.ModeSticky != 0 {
		if uid, ok := ownerOf(fi); ok && (uid == 0 || uid == uint32(geteuid())) {
			return nil
		}
	}
	return insecure("directory %s of key file %s is writable by group or others (mode %04o): whoever can write it can replace the key; chmod go-w %s, or move the key",
		dir, path, mode.Perm(), dir)
}
