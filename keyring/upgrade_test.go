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

// sealedLegacyScope writes, with plain store access, the state a keyring
// wrote after sealing existed but before tenant KEKs moved under the class
// key: a legacyScope (KEKs wrapped by the master key), sealed by kr.
func (e *env) sealedLegacyScope(kr *Keyring, s envelope.Scope, uri string, n uint32) {
	e.t.Helper()
	e.legacyScope(s, uri, n)
	st := rawRead(e.t, e.store, s)
	macKey, err := kr.classMAC(ctx, s.Class, nil)
	require.NoError(e.t, err)
	st.Epoch = 1
	st.MAC = kr.stateMAC(macKey, st)
	rawWrite(e.t, e.store, st)
}

// TestTenantKEKMigration: tenant KEKs wrapped by the master key (written
// before class-key wrapping) keep opening, one KMS unwrap each; new
// versions are wrapped by the class key; Upgrade, or RewrapAll, moves the
// old ones under the class key (one KMS unwrap each, once), after which a
// cold process makes no KMS call per tenant. Values sealed before open
// after. On every store.
func TestTenantKEKMigration(t *testing.T) {
	newHigh := uriNewHigh
	for _, migrate := range []struct {
		name string
		run  func(t *testing.T, kr *Keyring) int
	}{
		{"upgrade", func(t *testing.T, kr *Keyring) int {
			rep, err := kr.Upgrade(ctx)
			require.NoError(t, err)
			return rep.Classes[1].MovedToClassKey // high
		}},
		{"rewrap", func(t *testing.T, kr *Keyring) int {
			cfg := kr.Config()
			cc := cfg.Classes["high"]
			cc.PreviousMasterKeys = append(cc.PreviousMasterKeys, newHigh)
			cfg.Classes["high"] = cc
			kr.cfg = cfg
			rep, err := kr.RewrapAll(ctx, envelope.High, newHigh)
			require.NoError(t, err)
			assert.True(t, rep.ClassKey)
			return rep.MovedToClassKey
		}},
	} {
		for _, sc := range storeCases() {
			t.Run(migrate.name+"/"+sc.name, func(t *testing.T) {
				e := newEnv(t, sc.open(t)())
				admin, _ := e.process(testConfig())
				_, err := admin.Init(ctx)
				require.NoError(t, err)
				acme, globex := envelope.Scope{Class: envelope.High, Tenant: "acme"}, envelope.Scope{Class: envelope.High, Tenant: "globex"}
				e.sealedLegacyScope(admin, acme, uriHigh, 2)
				e.sealedLegacyScope(admin, globex, uriHigh, 1)

				// Still read, through the KMS; a new version goes under the
				// class key.
				app, keys := e.process(testConfig())
				env := envelope.New(app)
				bind := func(s envelope.Scope) envelope.Binding {
					return envelope.Binding{Class: s.Class, Tenant: s.Tenant, Table: "t", Column: "c"}
				}
				old := map[envelope.Scope][]byte{}
				for _, s := range []envelope.Scope{acme, globex} {
					ct, err := env.Seal(ctx, bind(s), []byte("before"))
					require.NoError(t, err)
					old[s] = ct
				}
				assert.Equal(t, 1, keys[uriHigh].unwrapsOf(envelope.High, "acme", 2), "a legacy tenant KEK: one KMS unwrap")
				info, err := app.Rotate(ctx, globex)
				require.NoError(t, err)
				assert.Equal(t, WrapClassKey, info.WrappedBy)

				moved := migrate.run(t, admin)
				assert.Equal(t, 3, moved, "acme v1, v2 and globex v1")
				for _, s := range []envelope.Scope{acme, globex} {
					for _, r := range rawRead(t, e.store, s).Records {
						assert.Equal(t, WrapClassKey, r.WrappedBy, "%s v%d", s, r.Version)
						assert.Empty(t, r.MasterKeyURI)
					}
				}

				cfg := admin.Config()
				cold, coldKeys := e.process(cfg)
				cenv := envelope.New(cold)
				for s, ct := range old {
					pt, err := cenv.Open(ctx, bind(s), ct)
					require.NoError(t, err)
					assert.Equal(t, "before", string(pt))
				}
				_, err = cold.KEK(ctx, ref(envelope.High, "acme", 1))
				require.NoError(t, err)
				assert.EqualValues(t, 1, sum(coldKeys, unwraps), "the class key only")

				if migrate.name == "upgrade" {
					again, err := admin.Upgrade(ctx)
					require.NoError(t, err)
					assert.Zero(t, again.Classes[1].MovedToClassKey)
				}
			})
		}
	}
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
