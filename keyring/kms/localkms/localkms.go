// Package localkms is a master key kept in a local file, for development
// and tests. Production master keys belong in a KMS (keyring/kms/awskms,
// keyring/kms/gcpkms), where they cannot be copied off a disk.
//
// The common case is one command to create a key and one URI to name it:
//
//	if _, err := localkms.Create("master-dev.key"); err != nil { ... }
//	mk, err := kms.Open(ctx, "local://master-dev.key")
//
// URIs are "local://" followed by a path: local:///var/lib/fieldcrypt/dev.key
// is absolute, local://keys/dev.key is relative to the working directory.
//
// # Key file
//
// A key file is one line of text, so it survives copy-and-paste and editors:
//
//	fieldcrypt-local-master-key/v1:<base64 (standard, padded) of 32 random bytes>
//
// followed by a newline. Create writes it with mode 0600 and never
// overwrites an existing file. Open refuses anything that is not exactly
// that format, and, with an error wrapping ErrInsecureKeyFile that names
// the path:
//
//   - a file that group or others may access (mode & 0o077 != 0);
//   - a file not owned by the process's effective user (root may open any):
//     whoever owns it can chmod it open, or replace its contents;
//   - a file whose directory group or others may write (mode & 0o022 != 0),
//     since they could rename it away and put their own key in its place;
//     unless the directory is sticky (like /tmp) and owned by root or by
//     the process's user: then others cannot rename or delete a file they
//     do not own, and a file they planted fails the owner check. When the
//     path is a symbolic link, the directory of its target is checked too.
//
// Create refuses to write a key into a directory Open would refuse.
//
// # Wrapped format
//
// Wrap is AES-256-GCM with a random 96-bit nonce and the encryption context
// (EncryptionContext.Canonical) as associated data:
//
//	0x01 || nonce (12 bytes) || ciphertext || tag (16 bytes)
//
// The leading version byte leaves room for a future format. Random nonces
// are safe for about 2^32 wraps under one key; the local master key only
// wraps KEKs (a handful of calls over its life), so that limit is far away.
package localkms

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/fieldcrypt/fieldcrypt/keyring/kms"
)

// Scheme is the URI scheme this package registers.
const Scheme = "local"

// KeySize is the size of a local master key: AES-256.
const KeySize = 32

// FilePrefix starts every key file; what follows is the base64 key.
const FilePrefix = "fieldcrypt-local-master-key/v1:"

const (
	version     = 0x01
	nonceSize   = 12
	tagSize     = 16
	overhead    = 1 + nonceSize + tagSize
	maxFileSize = 1024 // a valid file is len(FilePrefix)+44+2 bytes
)

// ErrInsecureKeyFile is returned (wrapped, together with kms.ErrInvalidInput)
// when a key file may be read or written by group or others, is not owned
// by the process's effective user, or sits in a directory that group or
// others may write. The error names the path and never contains key bytes.
var ErrInsecureKeyFile = errors.New("localkms: key file is not private to its owner")

func init() {
	kms.Register(Scheme, Opener{})
}

// Opener opens local:// URIs. It is registered for the local scheme in
// kms.DefaultRegistry with relative paths resolving against the working
// directory; set Dir to resolve them against another one (a configuration
// file's directory, say).
type Opener struct {
	// Dir is the directory relative paths resolve against ("": the
	// working directory).
	Dir string
}

// Path returns the file a local:// URI names, a relative path resolved
// against o.Dir.
func (o Opener) Path(uri string) (string, error) {
	path, err := PathFromURI(uri)
	if err != nil {
		return "", err
	}
	if o.Dir != "" && !filepath.IsAbs(path) {
		path = filepath.Join(o.Dir, path)
	}
	return path, nil
}

// OpenMasterKey opens the key file uri names. The key's URI names the
// resolved path, so what is recorded under it (a backup header) finds the
// same file from any directory.
func (o Opener) OpenMasterKey(_ context.Context, uri string) (kms.MasterKey, error) {
	path, err := o.Path(uri)
	if err != nil {
		return nil, &kms.Error{Op: "open", URI: uri, Err: err}
	}
	return Open(path)
}

// ValidateURI checks a local:// URI without reading the file.
func (o Opener) ValidateURI(uri string) error {
	_, err := PathFromURI(uri)
	return err
}

// URI returns the master key URI of a key file path ("local://" + path).
func URI(path string) string { return Scheme + "://" + path }

// PathFromURI returns the file path a local:// URI names.
func PathFromURI(uri string) (string, error) {
	path, ok := strings.CutPrefix(uri, Scheme+"://")
	if !ok || strings.TrimSpace(path) == "" || strings.ContainsRune(path, 0) {
		return "", fmt.Errorf("%w: %q (want local://PATH with a non-empty path, e.g. local:///var/lib/fieldcrypt/dev.key)", kms.ErrInvalidURI, uri)
	}
	return path, nil
}

// MasterKey is a master key read from a local file. It is safe for
// concurrent use.
type MasterKey struct {
	uri  string
	aead cipher.AEAD
}

var _ kms.MasterKey = (*MasterKey)(nil)

// Create generates a new random key, writes it to a new file at path with
// mode 0600 and returns it. It never overwrites: if path exists it fails
// (errors.Is(err, fs.ErrExist)).
func Create(path string) (*MasterKey, error) {
	uri := URI(path)
	if err := checkDirs(path); err != nil {
		return nil, &kms.Error{Op: "create", URI: uri, Err: err}
	}
	key := make([]byte, KeySize)
	if _, err := rand.Read(key); err != nil {
		return nil, &kms.Error{Op: "create", URI: uri, Err: err}
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, &kms.Error{Op: "create", URI: uri, Err: err}
	}
	// The umask can only remove bits, but be explicit in case the file
	// system or a pre-set ACL says otherwise.
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		os.Remove(path)
		return nil, &kms.Error{Op: "create", URI: uri, Err: err}
	}
	_, err = io.WriteString(f, FilePrefix+base64.StdEncoding.EncodeToString(key)+"\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return nil, &kms.Error{Op: "create", URI: uri, Err: err}
	}
	return newMasterKey(uri, key)
}

// Open reads the key file at path. See the package documentation for the
// format and the permission rule.
func Open(path string) (*MasterKey, error) {
	uri := URI(path)
	fail := func(err error) (*MasterKey, error) { return nil, &kms.Error{Op: "open", URI: uri, Err: err} }
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fail(fmt.Errorf("%w: %w", kms.ErrKeyNotFound, err))
		}
		return fail(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fail(err)
	}
	if !fi.Mode().IsRegular() {
		return fail(fmt.Errorf("%w: %s is not a regular file", kms.ErrInvalidInput, path))
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return fail(fmt.Errorf("%w: %w: %s has mode %04o, want 0600 (chmod 600 %s)",
			kms.ErrInvalidInput, ErrInsecureKeyFile, path, perm, path))
	}
	if err := checkOwner(path, fi); err != nil {
		return fail(err)
	}
	if err := checkDirs(path); err != nil {
		return fail(err)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return fail(err)
	}
	defer clear(data)
	key, err := parseKeyFile(data)
	if err != nil {
		return fail(fmt.Errorf("%w: %s: %w", kms.ErrInvalidInput, path, err))
	}
	return newMasterKey(uri, key)
}

// OpenURI opens the key file a local:// URI names.
func OpenURI(uri string) (*MasterKey, error) {
	path, err := PathFromURI(uri)
	if err != nil {
		return nil, &kms.Error{Op: "open", URI: uri, Err: err}
	}
	return Open(path)
}

// parseKeyFile extracts the key from a key file's contents. Its errors
// never include file contents.
func parseKeyFile(data []byte) ([]byte, error) {
	if len(data) > maxFileSize {
		return nil, errors.New("not a fieldcrypt local master key file (too large)")
	}
	line, ok := bytes.CutPrefix(data, []byte(FilePrefix))
	if !ok {
		return nil, fmt.Errorf("not a fieldcrypt local master key file (want first line %q + base64 key)", FilePrefix)
	}
	// One line, as Create writes it, with an optional "\n" or "\r\n"
	// ending: nothing else (a bare "\r" is not a line ending).
	if l, ok := bytes.CutSuffix(line, []byte("\r\n")); ok {
		line = l
	} else {
		line = bytes.TrimSuffix(line, []byte("\n"))
	}
	if bytes.ContainsAny(line, "\r\n") { // base64 decoding would skip them
		return nil, errors.New("key file has more than one line")
	}
	key := make([]byte, base64.StdEncoding.DecodedLen(len(line)))
	n, err := base64.StdEncoding.Strict().Decode(key, line)
	if err != nil {
		clear(key)
		return nil, errors.New("key is not valid base64")
	}
	if n != KeySize {
		clear(key)
		return nil, fmt.Errorf("key is %d bytes, want %d", n, KeySize)
	}
	return key[:n], nil
}

func newMasterKey(uri string, key []byte) (*MasterKey, error) {
	defer clear(key)
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, &kms.Error{Op: "open", URI: uri, Err: fmt.Errorf("%w: %w", kms.ErrInvalidInput, err)}
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, &kms.Error{Op: "open", URI: uri, Err: err}
	}
	return &MasterKey{uri: uri, aead: aead}, nil
}

// URI returns "local://" + the key file's path.
func (k *MasterKey) URI() string { return k.uri }

// Close does nothing: the key lives in process memory inside its cipher,
// which Go cannot clear; drop the MasterKey to release it.
func (k *MasterKey) Close() error { return nil }

// Wrap encrypts key under the master key, bound to ec.
func (k *MasterKey) Wrap(ctx context.Context, key []byte, ec kms.EncryptionContext) ([]byte, error) {
	if err := kms.ContextError(ctx); err != nil {
		return nil, &kms.Error{Op: "wrap", URI: k.uri, Err: err}
	}
	if err := kms.CheckWrapInput(key, ec); err != nil {
		return nil, &kms.Error{Op: "wrap", URI: k.uri, Err: err}
	}
	out := make([]byte, 1+nonceSize, overhead+len(key))
	out[0] = version
	if _, err := rand.Read(out[1:]); err != nil {
		return nil, &kms.Error{Op: "wrap", URI: k.uri, Err: err}
	}
	return k.aead.Seal(out, out[1:1+nonceSize], key, ec.Canonical()), nil
}

// Unwrap decrypts what Wrap returned. Any alteration of wrapped, or a
// different ec or master key, fails with kms.ErrAuthentication.
func (k *MasterKey) Unwrap(ctx context.Context, wrapped []byte, ec kms.EncryptionContext) ([]byte, error) {
	if err := kms.ContextError(ctx); err != nil {
		return nil, &kms.Error{Op: "unwrap", URI: k.uri, Err: err}
	}
	if len(wrapped) == 0 {
		return nil, &kms.Error{Op: "unwrap", URI: k.uri, Err: fmt.Errorf("%w: empty wrapped key", kms.ErrInvalidInput)}
	}
	if len(wrapped) > overhead+kms.MaxKeySize {
		return nil, &kms.Error{Op: "unwrap", URI: k.uri, Err: fmt.Errorf("%w: wrapped key is %d bytes, at most %d possible", kms.ErrInvalidInput, len(wrapped), overhead+kms.MaxKeySize)}
	}
	if len(wrapped) <= overhead {
		return nil, &kms.Error{Op: "unwrap", URI: k.uri, Err: fmt.Errorf("%w: wrapped key truncated (%d bytes)", kms.ErrAuthentication, len(wrapped))}
	}
	if wrapped[0] != version {
		return nil, &kms.Error{Op: "unwrap", URI: k.uri, Err: fmt.Errorf("%w: unknown wrapped key version %d", kms.ErrAuthentication, wrapped[0])}
	}
	if err := ec.Validate(); err != nil {
		return nil, &kms.Error{Op: "unwrap", URI: k.uri, Err: err}
	}
	key, err := k.aead.Open(nil, wrapped[1:1+nonceSize], wrapped[1+nonceSize:], ec.Canonical())
	if err != nil {
		return nil, &kms.Error{Op: "unwrap", URI: k.uri, Err: fmt.Errorf("%w: wrong master key or encryption context, or altered input", kms.ErrAuthentication)}
	}
	return key, nil
}
