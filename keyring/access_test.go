package keyring

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fieldcrypt/fieldcrypt/audit"
	"github.com/fieldcrypt/fieldcrypt/envelope"
	"github.com/fieldcrypt/fieldcrypt/keyring/kms"
)

// TestAccessControl: a keyring limited to decrypting critical and only
// encrypting high. Critical works in full; high seals (randomized,
// deterministic, blind index) and creates tenants' first KEKs but opens
// nothing and runs no lifecycle operation; moderate and low are refused
// outright. Every refusal is ErrAccessDenied (not the KMS's), comes before
// any store read or KMS call, and is audited without key material.
func TestAccessControl(t *testing.T) {
	e := newEnv(t, nil)
	admin, _ := e.process(testConfig())
	_, err := admin.Init(ctx)
	require.NoError(t, err)
	aenv := envelope.New(admin)
	bind := func(c envelope.Class, tenant string) envelope.Binding {
		return envelope.Binding{Class: c, Tenant: tenant, Table: "t", Column: "c", Row: "1"}
	}
	stored := map[envelope.Class][]byte{}
	for _, c := range encryptedClasses {
		ct, err := aenv.Seal(ctx, bind(c, ""), []byte("value"))
		require.NoError(t, err)
		stored[c] = ct
	}

	cfg := testConfig()
	cfg.Decrypt = []string{"critical"}
	cfg.EncryptOnly = []string{"high"}
	sink := &audit.Memory{}
	svc, keys := e.process(cfg, WithAudit(sink))
	env := envelope.New(svc)

	// critical: everything.
	ct, err := env.Seal(ctx, bind(envelope.Critical, ""), []byte("x"))
	require.NoError(t, err)
	_, err = env.Open(ctx, bind(envelope.Critical, ""), ct)
	require.NoError(t, err)
	_, err = env.Open(ctx, bind(envelope.Critical, ""), stored[envelope.Critical])
	require.NoError(t, err)

	// high: seal only.
	high := bind(envelope.High, "")
	hct, err := env.Seal(ctx, high, []byte("x"))
	require.NoError(t, err)
	_, err = env.SealDeterministic(ctx, high, []byte("x"))
	require.NoError(t, err)
	_, err = env.ComputeBlindIndex(ctx, high, envelope.BlindIndex{Name: "i", Size: 16}, []byte("x"))
	require.NoError(t, err)
	_, err = svc.PrimaryKEK(ctx, envelope.Scope{Class: envelope.High, Tenant: "new-tenant"})
	require.NoError(t, err, "a new tenant's first KEK, on first use")
	_, err = svc.EnsureTenants(ctx, []string{"t1", "t2"})
	require.NoError(t, err)

	before, reads := sum(keys, unwraps)+sum(keys, wraps), svc.Stats().StoreReads
	denied := []func() error{
		func() error { _, err := env.Open(ctx, high, hct); return err },
		func() error { _, err := env.Open(ctx, high, stored[envelope.High]); return err },
		func() error { _, err := svc.KEK(ctx, ref(envelope.High, "", 1)); return err },
		func() error { _, err := svc.Rotate(ctx, envelope.Scope{Class: envelope.High}); return err },
		func() error { _, err := svc.RotateSearch(ctx, envelope.Scope{Class: envelope.High}); return err },
		func() error { _, err := svc.Retire(ctx, ref(envelope.High, "", 1)); return err },
		func() error { _, err := svc.Destroy(ctx, ref(envelope.High, "", 1)); return err },
		func() error { _, err := svc.ShredTenant(ctx, "new-tenant"); return err },
		func() error { _, err := svc.RewrapAll(ctx, envelope.High, uriNewHigh); return err },
		func() error { _, err := svc.Upgrade(ctx); return err },
		// moderate and low: nothing.
		func() error { _, err := env.Seal(ctx, bind(envelope.Moderate, ""), []byte("x")); return err },
		func() error {
			_, err := env.Open(ctx, bind(envelope.Moderate, ""), stored[envelope.Moderate])
			return err
		},
		func() error { _, err := env.SealDeterministic(ctx, bind(envelope.Low, ""), []byte("x")); return err },
		func() error { _, err := svc.EnsureScope(ctx, envelope.Scope{Class: envelope.Low}); return err },
	}
	for i, call := range denied {
		err := call()
		require.ErrorIs(t, err, ErrAccessDenied, "call %d", i)
		assert.ErrorIs(t, err, envelope.ErrKeyUnavailable, "call %d", i)
		assert.NotErrorIs(t, err, kms.ErrAccessDenied, "call %d: the keyring refused, not the KMS", i)
	}
	assert.Equal(t, before, sum(keys, unwraps)+sum(keys, wraps), "no KMS call for a refused operation")
	assert.Equal(t, reads, svc.Stats().StoreReads, "no store read for a refused operation")
	assert.Zero(t, keys[uriModerate].unwraps.Load()+keys[uriLow].unwraps.Load(), "the classes it may not use were never touched")

	var events []audit.Event
	for _, ev := range sink.Events() {
		if ev.Type == audit.KeyringAccessDenied {
			events = append(events, ev)
			assert.Equal(t, audit.Error, ev.Outcome)
			assert.NotEmpty(t, ev.Class)
			assert.Contains(t, ev.Error, "denied")
		}
	}
	assert.Len(t, events, len(denied), "one event per refusal")

	list, err := svc.List(ctx)
	require.NoError(t, err, "metadata of every class, verified for those it may use")
	assert.NotEmpty(t, list)
	infos, err := svc.Init(ctx)
	require.NoError(t, err, "Init covers the classes it may use")
	assert.Len(t, infos, 2)
}

func TestAccessConfigValidation(t *testing.T) {
	for _, tc := range []struct {
		name              string
		decrypt, encrypts []string
		want              string
	}{
		{"unknown class", []string{"secret"}, nil, `unknown class "secret"`},
		{"public", nil, []string{"public"}, `"public" is not a configured encrypted class`},
		{"both lists", []string{"high"}, []string{"high"}, "listed twice"},
		{"upper case", []string{"High"}, nil, `unknown class "High"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig()
			cfg.Decrypt, cfg.EncryptOnly = tc.decrypt, tc.encrypts
			err := cfg.Validate()
			require.ErrorIs(t, err, ErrInvalidConfig)
			assert.ErrorContains(t, err, tc.want)
		})
	}
	cfg := testConfig()
	delete(cfg.Classes, "low")
	cfg.EncryptOnly = []string{"low"}
	assert.ErrorContains(t, cfg.Validate(), `"low" is not a configured encrypted class`)
}
