package backup_test

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"log"
	"strings"

	"github.com/fieldcrypt/fieldcrypt/backup"
	"github.com/fieldcrypt/fieldcrypt/envelope"
	"github.com/fieldcrypt/fieldcrypt/keyring/kms"
)

// memKey is a stand-in for a real KMS master key (in production, open one
// with kms.Open("aws-kms://...") after importing its backend).
type memKey struct {
	uri  string
	aead cipher.AEAD
}

func newMemKey(uri string) *memKey {
	k := make([]byte, 32)
	rand.Read(k)
	b, _ := aes.NewCipher(k)
	a, _ := cipher.NewGCM(b)
	return &memKey{uri, a}
}

func (k *memKey) URI() string { return k.uri }

func (k *memKey) Close() error { return nil }

func (k *memKey) Wrap(_ context.Context, key []byte, ec kms.EncryptionContext) ([]byte, error) {
	nonce := make([]byte, 12)
	rand.Read(nonce)
	return k.aead.Seal(nonce, nonce, key, ec.Canonical()), nil
}

func (k *memKey) Unwrap(_ context.Context, w []byte, ec kms.EncryptionContext) ([]byte, error) {
	if len(w) < 28 {
		return nil, kms.ErrAuthentication
	}
	key, err := k.aead.Open(nil, w[:12], w[12:], ec.Canonical())
	if err != nil {
		return nil, kms.ErrAuthentication
	}
	return key, nil
}

func Example() {
	ctx := context.Background()
	master := newMemKey("local:///etc/fieldcrypt/master-critical.key")
	dump := strings.NewReader("-- PostgreSQL database dump\nCREATE TABLE users (...);\n")

	// Encrypt: the backup carries everything but the master key.
	var file bytes.Buffer
	res, err := backup.Encrypt(ctx, &file, dump, master, backup.EncryptOptions{
		Class: envelope.Critical,
		Name:  "users-db nightly",
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("plaintext bytes:", res.PlaintextBytes, "segments:", res.Segments)

	// Inspect needs no key (and authenticates nothing).
	h, _ := backup.Inspect(bytes.NewReader(file.Bytes()))
	fmt.Println("class:", h.Class, "key:", h.MasterKeyURI, "name:", h.Name)

	// Restore: an opener maps the header's key URI to a master key; pin the
	// keys you trust. Write to a temp file and keep it only if err == nil.
	opener := kms.OpenerFunc(func(ctx context.Context, uri string) (kms.MasterKey, error) {
		return master, nil // in production: kms.Open(ctx, uri)
	})
	var restored bytes.Buffer
	_, err = backup.Decrypt(ctx, &restored, bytes.NewReader(file.Bytes()), opener, backup.DecryptOptions{
		KeyURIs: []string{master.URI()},
	})
	fmt.Println("restored:", err == nil, strings.HasPrefix(restored.String(), "-- PostgreSQL"))

	// Tampering is detected.
	b := file.Bytes()
	b[len(b)-1] ^= 1
	_, err = backup.Verify(ctx, bytes.NewReader(b), opener, backup.DecryptOptions{})
	fmt.Println("tampered:", errors.Is(err, backup.ErrAuthentication))
	// Output:
	// plaintext bytes: 54 segments: 1
	// class: critical key: local:///etc/fieldcrypt/master-critical.key name: users-db nightly
	// restored: true true
	// tampered: true
}

func ExampleInspect() {
	master := newMemKey("aws-kms://arn:aws:kms:eu-west-1:111122223333:key/example")
	var file bytes.Buffer
	if _, err := backup.Encrypt(context.Background(), &file, strings.NewReader("data"), master,
		backup.EncryptOptions{Class: envelope.High, SegmentSize: 64 << 10}); err != nil {
		log.Fatal(err)
	}
	h, err := backup.Inspect(&file)
	if err != nil {
		log.Fatal(err)
	}
	ec := h.EncryptionContext()
	fmt.Println(h.Version, h.Class, h.SegmentSize, h.MasterKeyURI)
	fmt.Println(ec[backup.ECPurpose], ec[backup.ECClass], len(ec[backup.ECExportID]))
	// Output:
	// 1 high 65536 aws-kms://arn:aws:kms:eu-west-1:111122223333:key/example
	// backup high 32
}
