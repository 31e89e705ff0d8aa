package keyring

import (
	"crypto/rand"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fieldcrypt/fieldcrypt/audit"
	"github.com/fieldcrypt/fieldcrypt/envelope"
)

// legacyScope writes, with plain store access, the state a keyring wrote
// before sealing existed: versions 1..n of s (the last active, the others
// decrypt-only), wrapped under uri, no MAC, no epoch, no class key.
func (e *env) legacyScope(s envelope.Scope, uri string, n uint32) {
	e.t.Helper()
	key := e.keys(uri)[uri]
	now := e.clock.Now().Add(-time.Hour)
	st := &ScopeState{Scope: s, Search: []uint32{1}}
	for v := uint32(1); v <= n; v++ {
		raw := make([]byte, envelope.KEKSize)
		_, _ = rand.Read(raw)
		w, err := key.Wrap(ctx, raw, (&Keyring{name: "test-ring"}).ec(ref(s.Class, s.Tenant, v)))
		require.NoError(e.t, err)
		state := StateDecryptOnly
		if v == n {
			state = StateActive
		}
		st.Records = append(st.Records, Record{Version: v, State: state, MasterKeyURI: uri, Wrapped: w, CreatedAt: now, UpdatedAt: now})
	}
	rawWrite(e.t, e.store, st)
}

func TestUnsealedStoreAndUpgrade(t *testing.T) {
	for _, sc := range storeCases() {
		t.Run(sc.name, func(t *testing.T) {
			e := newEnv(t, sc.open(t)())
			acme := envelope.Scope{Class: envelope.High, Tenant: "acme"}
			e.legacyScope(critical, uriCritical, 2)
			e.legacyScope(highWide, uriHigh, 1)
			e.legacyScope(acme, uriHigh, 1)

			// Refused, naming the command, until upgraded.
			kr, _ := e.process(testConfig())
			_, err := kr.PrimaryKEK(ctx, critical)
			require.ErrorIs(t, err, ErrUnsealed)
			assert.ErrorIs(t, err, envelope.ErrKeyUnavailable)
			assert.NotErrorIs(t, err, ErrTampered)
			assert.ErrorContains(t, err, "fieldcrypt keys upgrade")
			_, err = kr.Rotate(ctx, critical)
			require.ErrorIs(t, err, ErrUnsealed, "no writes either")
			globex := envelope.Scope{Class: envelope.High, Tenant: "globex"}
			_, err = kr.PrimaryKEK(ctx, globex)
			require.ErrorIs(t, err, ErrUnsealed, "not even a new tenant's first KEK, which it would then refuse")
			assert.Empty(t, rawRead(t, e.store, globex).Records)
			_, err = kr.List(ctx)
			require.ErrorIs(t, err, ErrUnsealed)

			// The migration window: used, audited once per scope.
			sink := &audit.Memory{}
			allow := testConfig()
			allow.AllowUnsealedStore = true
			window, _ := e.process(allow, WithAudit(sink))
			for range 3 {
				p, err := window.PrimaryKEK(ctx, critical)
				require.NoError(t, err)
				assert.Equal(t, uint32(2), p.Ref().Version)
				_, err = window.PrimaryKEK(ctx, acme)
				require.NoError(t, err)
			}
			var warned []string
			for _, ev := range sink.Events() {
				if ev.Type == audit.KeyringUnsealed {
					warned = append(warned, envelope.Scope{Class: mustClass(t, ev.Class), Tenant: ev.Tenant}.String())
				}
			}
			assert.ElementsMatch(t, []string{"critical", "high/tenant=acme"}, warned)

			// Upgrade seals every scope as it is now, once.
			rep, err := kr.Upgrade(ctx)
			require.NoError(t, err)
			require.Len(t, rep.Classes, 4)
			byClass := map[envelope.Class]ClassUpgrade{}
			for _, cu := range rep.Classes {
				byClass[cu.Class] = cu
			}
			assert.True(t, byClass[envelope.Critical].ClassKeyCreated)
			assert.Equal(t, []envelope.Scope{critical}, byClass[envelope.Critical].Sealed)
			assert.Equal(t, []envelope.Scope{highWide, acme}, byClass[envelope.High].Sealed)
			assert.True(t, byClass[envelope.Low].ClassKeyCreated, "empty classes are sealed too")
			again, err := kr.Upgrade(ctx)
			require.NoError(t, err)
			for _, cu := range again.Classes {
				assert.False(t, cu.ClassKeyCreated)
				assert.Empty(t, cu.Sealed)
			}
			assert.Equal(t, 2, again.Classes[1].AlreadySealed, "high: both scopes")

			// A new process without the window works, and verifies.
			after, _ := e.process(testConfig())
			p, err := after.PrimaryKEK(ctx, critical)
			require.NoError(t, err)
			assert.Equal(t, uint32(2), p.Ref().Version)
			_, err = after.KEK(ctx, ref(envelope.Critical, "", 1))
			require.NoError(t, err)
			_, err = after.PrimaryKEK(ctx, acme)
			require.NoError(t, err)
			st := rawRead(t, e.store, critical)
			assert.Len(t, st.MAC, macSize)
			assert.EqualValues(t, 1, st.Epoch)

			// Once sealed, stripping a scope's seal is tampering, not legacy.
			st.MAC, st.Epoch = nil, 0
			rawWrite(t, e.store, st)
			fresh, _ := e.process(testConfig())
			_, err = fresh.PrimaryKEK(ctx, critical)
			assert.ErrorIs(t, err, ErrTampered)
		})
	}
}

func mustClass(t *testing.T, s string) envelope.Class {
	c, err := envelope.ParseClass(s)
	require.NoError(t, err)
	return c
}

// TestUpgradeInterrupted: a class key exists but a tenant scope was not
// sealed yet. Lookups refuse that scope (tampering and an interrupted
// upgrade look the same) unless the migration window is open; re-running
// Upgrade finishes.
func TestUpgradeInterrupted(t *testing.T) {
	e := newEnv(t, nil)
	acme := envelope.Scope{Class: envelope.High, Tenant: "acme"}
	e.legacyScope(highWide, uriHigh, 1)
	kr, _ := e.process(testConfig())
	_, err := kr.Upgrade(ctx)
	require.NoError(t, err)
	e.legacyScope(acme, uriHigh, 1) // written by a process of the old version meanwhile

	fresh, _ := e.process(testConfig())
	_, err = fresh.PrimaryKEK(ctx, acme)
	require.ErrorIs(t, err, ErrTampered)
	assert.ErrorContains(t, err, "interrupted (re-run it)")
	allow := testConfig()
	allow.AllowUnsealedStore = true
	window, _ := e.process(allow)
	_, err = window.PrimaryKEK(ctx, acme)
	require.NoError(t, err)

	rep, err := kr.Upgrade(ctx)
	require.NoError(t, err)
	assert.Equal(t, []envelope.Scope{acme}, rep.Classes[1].Sealed)
	again, _ := e.process(testConfig())
	_, err = again.PrimaryKEK(ctx, acme)
	require.NoError(t, err)
}

func TestUpgradeRefusals(t *testing.T) {
	t.Run("untrusted master key", func(t *testing.T) {
		e := newEnv(t, nil)
		e.legacyScope(critical, uriAttacker, 1)
		sink := &audit.Memory{}
		kr, _ := e.process(testConfig(), WithAudit(sink))
		_, err := kr.Upgrade(ctx)
		require.ErrorIs(t, err, ErrUntrustedKey)
		assert.ErrorContains(t, err, "not vouching for it")
		assert.NotEmpty(t, tamperEvents(sink, "critical"))
		assert.Empty(t, rawRead(t, e.store, critical).MAC, "nothing sealed")
	})
	t.Run("class key deleted", func(t *testing.T) {
		e := newEnv(t, nil)
		kr, _ := e.process(testConfig())
		_, err := kr.EnsureScope(ctx, envelope.Scope{Class: envelope.High, Tenant: "acme"})
		require.NoError(t, err)
		st := rawRead(t, e.store, highWide)
		st.ClassKey, st.MAC, st.Epoch = nil, nil, 0
		rawWrite(t, e.store, st)
		other, _ := e.process(testConfig())
		_, err = other.Upgrade(ctx)
		require.ErrorIs(t, err, ErrTampered)
		assert.ErrorContains(t, err, "class key was deleted")
	})
	t.Run("tampered sealed scope", func(t *testing.T) {
		e := newEnv(t, nil)
		kr, _ := e.process(testConfig())
		_, err := kr.Init(ctx)
		require.NoError(t, err)
		st := rawRead(t, e.store, critical)
		st.Search = []uint32{1, 1}
		rawWrite(t, e.store, st)
		_, err = kr.Upgrade(ctx)
		require.ErrorIs(t, err, ErrTampered, "Upgrade never vouches over a failed MAC")
	})
}

// TestUpgradeAliases: records stored under another spelling of a
// configured master key (the relative local:// paths of an earlier
// 'fieldcrypt init') are recorded under the configured one, once checked.
func TestUpgradeAliases(t *testing.T) {
	const relative = "local://.fieldcrypt/master-low.key"
	e := newEnv(t, nil)
	_ = e.keys(uriLow)
	e.raw[relative] = e.raw[uriLow] // the same key, another name
	e.legacyScope(envelope.Scope{Class: envelope.Low}, relative, 2)
	kr, _ := e.process(testConfig())
	_, err := kr.Upgrade(ctx)
	require.ErrorIs(t, err, ErrUntrustedKey, "without the alias")

	_, err = kr.Upgrade(ctx, WithMasterKeyAlias(relative, uriModerate))
	require.ErrorIs(t, err, ErrInvalidConfig, "an alias must name a key of the same class")
	rep, err := kr.Upgrade(ctx, WithMasterKeyAlias(relative, uriLow))
	require.NoError(t, err)
	assert.Equal(t, 2, rep.Classes[3].Renamed)
	st := rawRead(t, e.store, envelope.Scope{Class: envelope.Low})
	for _, r := range st.Records {
		assert.Equal(t, uriLow, r.MasterKeyURI)
	}
	after, _ := e.process(testConfig())
	_, err = after.KEK(ctx, ref(envelope.Low, "", 1))
	require.NoError(t, err)

	// An alias to a different key is refused: it must unwrap.
	e2 := newEnv(t, nil)
	e2.legacyScope(envelope.Scope{Class: envelope.Low}, relative, 1)
	kr2, _ := e2.process(testConfig())
	_, err = kr2.Upgrade(ctx, WithMasterKeyAlias(relative, uriLow))
	require.ErrorIs(t, err, ErrInvalidConfig)
	assert.ErrorContains(t, err, "does not unwrap under its alias")
}
