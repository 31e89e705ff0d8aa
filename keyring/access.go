package keyring

import (
	"context"
	"strconv"

	"github.com/fieldcrypt/fieldcrypt/audit"
	"github.com/fieldcrypt/fieldcrypt/envelope"
)

// access is what a process may do with a class (Config.Decrypt,
// Config.EncryptOnly).
type access uint8

const (
	accessNone    access = iota
	accessEncrypt        // seal: the primary and the search keys
	accessDecrypt        // seal and open: any version; lifecycle operations
)

func (a access) String() string {
	switch a {
	case accessEncrypt:
		return "encrypt-only"
	case accessDecrypt:
		return "decrypt"
	}
	return "no access"
}

// allow refuses an operation on ref's class that needs more than the
// configuration grants this process: ErrAccessDenied (with
// envelope.ErrKeyUnavailable), audited as keyring.access_denied. Callers
// check before reading a state or unwrapping a key. A keyring without
// Config.Decrypt or Config.EncryptOnly allows everything.
func (k *Keyring) allow(ctx context.Context, op string, ref envelope.KEKRef, need access) error {
	if k.access == nil {
		return nil
	}
	have := k.access[ref.Class]
	if have >= need {
		return nil
	}
	reason := "class " + ref.Class.String() + " is " + have.String() + " in keyring " + strconv.Quote(k.name) + " (Config.Decrypt / Config.EncryptOnly); " + op + " needs " + need.String()
	err := keyErr(op, ref, "", reason, ErrAccessDenied, envelope.ErrKeyUnavailable)
	k.emit(ctx, audit.KeyringAccessDenied, ref, "", err, nil)
	return err
}

// allowed reports, without auditing, whether the process may use class c
// at all (List verifies only those).
func (k *Keyring) allowed(c envelope.Class) bool {
	return k.access == nil || k.access[c] != accessNone
}
