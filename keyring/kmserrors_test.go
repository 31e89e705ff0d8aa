package keyring_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fieldcrypt/fieldcrypt/envelope"
	"github.com/fieldcrypt/fieldcrypt/internal/fakegcpkms"
	"github.com/fieldcrypt/fieldcrypt/keyring"
	"github.com/fieldcrypt/fieldcrypt/keyring/kms"
	"github.com/fieldcrypt/fieldcrypt/keyring/kms/gcpkms"
)

// TestKMSFailuresThroughKeyring drives the real Google Cloud KMS client
// against the in-process KeyManagementService server and checks that each
// failure reaches the keyring's callers as a distinct error that names the
// class and the master key URI, never key material.
func TestKMSFailuresThroughKeyring(t *testing.T) {
	tests := []struct {
		name   string
		breaks func(srv *fakegcpkms.Server, key string) (cfgName string)
		want   error
	}{
		{"access denied", func(srv *fakegcpkms.Server, key string) string { srv.SetDenied(key, true); return "app" }, kms.ErrAccessDenied},
		{"disabled key", func(srv *fakegcpkms.Server, key string) string { srv.SetDisabled(key, true); return "app" }, kms.ErrKeyDisabled},
		{"KMS down", func(srv *fakegcpkms.Server, _ string) string { srv.Stop(); return "app" }, kms.ErrUnavailable},
		// A keyring whose id differs sends another encryption context: the
		// KMS refuses to unwrap what was wrapped for "app".
		{"wrong encryption context", func(*fakegcpkms.Server, string) string { return "other-app" }, kms.ErrAuthentication},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			srv := fakegcpkms.Start(t)
			name := fakegcpkms.KeyName("critical")
			srv.AddKey(name)
			uri := "gcp-kms://" + name
			mk, err := gcpkms.New(ctx, uri, gcpkms.WithClient(srv.Client(t)))
			require.NoError(t, err)
			store := keyring.NewFileStore(filepath.Join(t.TempDir(), "keyring.json"))
			cfg := keyring.Config{Name: "app", Classes: map[string]keyring.ClassConfig{"critical": {MasterKey: uri}}}

			first, err := keyring.New(cfg, store, keyring.WithMasterKeys(mk))
			require.NoError(t, err)
			_, err = first.Init(ctx)
			require.NoError(t, err)
			require.NoError(t, first.Close())

			cfg.Name = tc.breaks(srv, name)
			// A new process: cold cache, so the KEK must come from the KMS.
			kr, err := keyring.New(cfg, store, keyring.WithMasterKeys(mk), keyring.WithOpTimeout(2*time.Second))
			require.NoError(t, err)
			defer kr.Close()
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			_, err = kr.KEK(cctx, envelope.KEKRef{Class: envelope.Critical, Version: 1})
			require.Error(t, err)
			assert.True(t, errors.Is(err, tc.want), "want %v, got %v", tc.want, err)
			assert.True(t, errors.Is(err, envelope.ErrKeyUnavailable), "callers can branch on the envelope sentinel too: %v", err)
			for _, other := range []error{kms.ErrAccessDenied, kms.ErrKeyDisabled, kms.ErrUnavailable, kms.ErrAuthentication} {
				if other != tc.want {
					assert.False(t, errors.Is(err, other), "%v must be distinct from %v", err, other)
				}
			}
			assert.Contains(t, err.Error(), "critical")
			assert.Contains(t, err.Error(), uri)

			// The same failure reaches Open through the envelope.
			_, err = envelope.New(kr).Open(cctx, envelope.Binding{Class: envelope.Critical, Table: "t", Column: "c"},
				[]byte{0xFC, 0x01, 0x01, 0x00, 0x01, 0x01, 63: 0})
			assert.True(t, errors.Is(err, tc.want), "%v", err)
		})
	}
}
