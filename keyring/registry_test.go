package keyring_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fieldcrypt/fieldcrypt/envelope"
	"github.com/fieldcrypt/fieldcrypt/keyring"
	"github.com/fieldcrypt/fieldcrypt/keyring/kms"
)

// vaultBackend is a master-key backend of a scheme fieldcrypt does not
// ship ("vault-test://NAME"): it validates its own URIs and counts what it
// opens and closes.
type vaultBackend struct {
	mu     sync.Mutex
	keys   map[string]*demoKey
	opened int
}

func (b *vaultBackend) ValidateURI(uri string) error {
	name, ok := strings.CutPrefix(uri, "vault-test://")
	if !ok || name == "" || strings.Contains(name, "/") {
		return fmt.Errorf("%w: %q: want vault-test://NAME", kms.ErrInvalidURI, uri)
	}
	return nil
}

func (b *vaultBackend) OpenMasterKey(_ context.Context, uri string) (kms.MasterKey, error) {
	if err := b.ValidateURI(uri); err != nil {
		return nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.keys == nil {
		b.keys = map[string]*demoKey{}
	}
	if b.keys[uri] == nil {
		b.keys[uri] = newDemoKey(uri)
	}
	b.opened++
	return b.keys[uri], nil
}

// TestUserRegisteredScheme: a scheme registered by a user is validated by
// its own backend and works end to end: configuration, KEK creation,
// sealing and opening, master key rotation to it. Both through the default
// registry and through a registry of the application's own.
func TestUserRegisteredScheme(t *testing.T) {
	for _, viaDefault := range []bool{false, true} {
		t.Run(fmt.Sprintf("default=%v", viaDefault), func(t *testing.T) {
			ctx := context.Background()
			b := &vaultBackend{}
			var opts []keyring.Option
			if viaDefault {
				kms.Register("vault-test", b)
			} else {
				reg := new(kms.Registry)
				reg.Register("vault-test", b)
				opts = append(opts, keyring.WithOpener(reg))
			}
			cfg := keyring.Config{Name: "app", Classes: map[string]keyring.ClassConfig{"critical": {MasterKey: "vault-test://critical"}}}
			kr, err := keyring.New(cfg, keyring.NewFileStore(filepath.Join(t.TempDir(), "k.json")), opts...)
			require.NoError(t, err)
			defer kr.Close()
			_, err = kr.Init(ctx)
			require.NoError(t, err)
			env := envelope.New(kr)
			bind := envelope.Binding{Class: envelope.Critical, Table: "t", Column: "c", Row: "1"}
			ct, err := env.Seal(ctx, bind, []byte("hello"))
			require.NoError(t, err)
			pt, err := env.Open(ctx, bind, ct)
			require.NoError(t, err)
			assert.Equal(t, "hello", string(pt))
			assert.Positive(t, b.opened)

			// master key rotation to another key of the same backend
			rep, err := kr.RewrapAll(ctx, envelope.Critical, "vault-test://critical-2")
			require.NoError(t, err)
			assert.Equal(t, 1, rep.Rewrapped)
			// the backend's own parser refuses a URI of its scheme
			_, err = kr.RewrapAll(ctx, envelope.Critical, "vault-test://a/b")
			require.ErrorIs(t, err, keyring.ErrInvalidConfig)
			assert.Contains(t, err.Error(), "want vault-test://NAME")

			bad := keyring.Config{Name: "app", Classes: map[string]keyring.ClassConfig{"critical": {MasterKey: "vault-test://"}}}
			_, err = keyring.New(bad, keyring.NewFileStore(filepath.Join(t.TempDir(), "k.json")), opts...)
			require.ErrorIs(t, err, keyring.ErrInvalidConfig)
			assert.Contains(t, err.Error(), "want vault-test://NAME")
		})
	}
	// an unregistered scheme is refused, naming what is registered
	err := keyring.CheckMasterKeyURI("nosuch://x")
	require.True(t, errors.Is(err, keyring.ErrInvalidConfig))
	assert.Contains(t, err.Error(), `unknown scheme "nosuch"`)
}
