package keyring_test

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	kmssdk "github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fieldcrypt/fieldcrypt/backup"
	"github.com/fieldcrypt/fieldcrypt/envelope"
	"github.com/fieldcrypt/fieldcrypt/internal/testsvc"
	"github.com/fieldcrypt/fieldcrypt/keyring"
	"github.com/fieldcrypt/fieldcrypt/keyring/kms/awskms"
)

// TestDocumentedEncryptionContext (issue 12 §4): the encryption context
// docs/operations.md and the package docs give for every wrap is the one
// the KMS sees: AWS KMS itself decrypts a stored KEK, a class key and a
// backup's file key when called, through the AWS SDK, with exactly the
// documented context, and refuses the key name the old docs gave.
func TestDocumentedEncryptionContext(t *testing.T) {
	ctx := context.Background()
	endpoint := testsvc.Moto(t)
	sdk := kmssdk.New(kmssdk.Options{Region: "us-east-1", BaseEndpoint: aws.String(endpoint),
		Credentials: credentials.NewStaticCredentialsProvider("test", "test", "")})
	out, err := sdk.CreateKey(ctx, &kmssdk.CreateKeyInput{})
	require.NoError(t, err)
	uri := "aws-kms://" + aws.ToString(out.KeyMetadata.Arn)
	mk, err := awskms.New(ctx, uri, awskms.WithClient(sdk))
	require.NoError(t, err)

	store := keyring.NewFileStore(filepath.Join(t.TempDir(), "keyring.json"))
	cfg := keyring.Config{Name: "billing", Classes: map[string]keyring.ClassConfig{"critical": {MasterKey: uri, TenantScoped: true}}}
	kr, err := keyring.New(cfg, store, keyring.WithMasterKeys(mk))
	require.NoError(t, err)
	defer kr.Close()
	_, err = kr.EnsureScope(ctx, envelope.Scope{Class: envelope.Critical})
	require.NoError(t, err)
	_, err = kr.Rotate(ctx, envelope.Scope{Class: envelope.Critical})
	require.NoError(t, err)
	_, err = kr.EnsureScope(ctx, envelope.Scope{Class: envelope.Critical, Tenant: "acme"})
	require.NoError(t, err)

	decrypt := func(blob []byte, ec map[string]string) ([]byte, error) {
		res, err := sdk.Decrypt(ctx, &kmssdk.DecryptInput{CiphertextBlob: blob, KeyId: out.KeyMetadata.Arn, EncryptionContext: ec})
		if err != nil {
			return nil, err
		}
		return res.Plaintext, nil
	}
	st, err := store.LoadScope(ctx, envelope.Scope{Class: envelope.Critical})
	require.NoError(t, err)
	require.Len(t, st.Records, 2)
	r := st.Records[1]
	// A class-wide KEK: class name, decimal version, keyring id (no tenant).
	pt, err := decrypt(r.Wrapped, map[string]string{
		"fieldcrypt:class": "critical", "fieldcrypt:kek-version": "2", "fieldcrypt:keyring": "billing"})
	require.NoError(t, err)
	assert.Len(t, pt, envelope.KEKSize)
	// A tenant's KEK is wrapped by the class key, not by the KMS.
	ts, err := store.LoadScope(ctx, envelope.Scope{Class: envelope.Critical, Tenant: "acme"})
	require.NoError(t, err)
	require.Len(t, ts.Records, 1)
	assert.Equal(t, keyring.WrapClassKey, ts.Records[0].WrappedBy)
	_, err = decrypt(ts.Records[0].Wrapped, map[string]string{
		"fieldcrypt:class": "critical", "fieldcrypt:tenant": "acme", "fieldcrypt:kek-version": "1", "fieldcrypt:keyring": "billing"})
	assert.Error(t, err, "tenant KEKs never go to the KMS")
	_, err = decrypt(r.Wrapped, map[string]string{"classification": "critical"})
	assert.Error(t, err, "the key the old awskms doc named is not sent")

	// Class key: class, keyring id, purpose.
	cs, err := store.LoadScope(ctx, envelope.Scope{Class: envelope.Critical})
	require.NoError(t, err)
	require.NotNil(t, cs.ClassKey)
	pt, err = decrypt(cs.ClassKey.Wrapped, map[string]string{"fieldcrypt:class": "critical", "fieldcrypt:keyring": "billing", "fieldcrypt:purpose": "class-key"})
	require.NoError(t, err)
	assert.Len(t, pt, 32)

	// Backup file key: purpose, format version, class, export id (hex),
	// creation time (RFC 3339, UTC), export name.
	var buf bytes.Buffer
	_, err = backup.Encrypt(ctx, &buf, bytes.NewReader([]byte("dump")), mk, backup.EncryptOptions{Class: envelope.Critical, Name: "orders 2026-11-23"})
	require.NoError(t, err)
	h, err := backup.Inspect(bytes.NewReader(buf.Bytes()))
	require.NoError(t, err)
	pt, err = decrypt(h.WrappedKey, map[string]string{
		"fieldcrypt:purpose": "backup", "fieldcrypt:backup-version": "1", "fieldcrypt:class": "critical",
		"fieldcrypt:export-id": h.ExportID.String(), "fieldcrypt:created-at": h.CreatedAt.UTC().Format("2006-01-02T15:04:05Z"),
		"fieldcrypt:export-name": "orders 2026-11-23"})
	require.NoError(t, err)
	assert.Len(t, pt, 32)
}
