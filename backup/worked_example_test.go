package backup

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fieldcrypt/fieldcrypt/keyring/kms/localkms"
)

// The intermediate values of docs/backup-format.md's worked example
// (testdata/good_empty.fcb), for implementers in other languages.
const (
	workedFileKey    = "81e11a663c77035da5d426271f0dc6a8334e83a999c8382331a519feaa1b7704"
	workedPayloadKey = "0d3eed24029d50c22f58d4b945939acddb4f7d84a59b3f74db8c87786d797c27"
	workedMACKey     = "96843dd052f3fa08c99d3f030cb587f3f56bb981e484e802681a3a3e9a2ecd8e"
	workedNonce0     = "000000000000000000000001"
)

func TestWorkedExample(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "good_empty.fcb"))
	if err != nil {
		t.Fatal(err)
	}
	h, err := Inspect(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	mk := vectorMasterKey(t, nil)
	fileKey, err := mk.Unwrap(context.Background(), h.WrappedKey, h.EncryptionContext())
	if err != nil {
		t.Fatal(err)
	}
	keys, err := deriveKeys(fileKey, h.salt[:])
	if err != nil {
		t.Fatal(err)
	}
	var nonce [nonceSize]byte
	segmentNonce(&nonce, 0, true)
	got := map[string][2]string{
		"file key":    {hex.EncodeToString(fileKey), workedFileKey},
		"payload key": {hex.EncodeToString(keys.payload[:]), workedPayloadKey},
		"mac key":     {hex.EncodeToString(keys.mac[:]), workedMACKey},
		"nonce 0":     {hex.EncodeToString(nonce[:]), workedNonce0},
	}
	for name, v := range got {
		if v[0] != v[1] {
			t.Errorf("%s = %s, docs say %s", name, v[0], v[1])
		}
	}
	t.Logf("header size %d, export id %s, salt %x, mac %x, EC canonical %q", h.Size, h.ExportID, h.salt, h.mac, h.EncryptionContext().Canonical())
}

// TestWorkedExampleOpensWithLocalKMS: the worked example's wrapped file key
// is what the local backend writes (0x01 || nonce || ciphertext || tag, AAD
// = EC.Canonical()), so localkms unwraps it with the test master key.
func TestWorkedExampleOpensWithLocalKMS(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "good_empty.fcb"))
	require.NoError(t, err)
	h, err := Inspect(bytes.NewReader(data))
	require.NoError(t, err)
	hexKey, err := os.ReadFile(filepath.Join("testdata", "test-master-key.hex"))
	require.NoError(t, err)
	key, err := hex.DecodeString(strings.TrimSpace(string(hexKey)))
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "master.key")
	require.NoError(t, os.WriteFile(path, []byte(localkms.FilePrefix+base64.StdEncoding.EncodeToString(key)+"\n"), 0o600))
	mk, err := localkms.Open(path)
	require.NoError(t, err)
	require.Len(t, h.WrappedKey, 1+12+32+16)
	assert.Equal(t, byte(0x01), h.WrappedKey[0])
	fileKey, err := mk.Unwrap(context.Background(), h.WrappedKey, h.EncryptionContext())
	require.NoError(t, err)
	assert.Equal(t, workedFileKey, hex.EncodeToString(fileKey))
}
