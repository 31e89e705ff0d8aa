package keyring

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fieldcrypt/fieldcrypt/envelope"
	"github.com/fieldcrypt/fieldcrypt/keyring/kms"
)

var ctx = context.Background()

func ref(c envelope.Class, tenant string, v uint32) envelope.KEKRef {
	return envelope.KEKRef{Class: c, Tenant: tenant, Version: v}
}

func TestInitAndLookups(t *testing.T) {
	e := newEnv(t, nil)
	kr, keys := e.process(testConfig())
	infos, err := kr.Init(ctx)
	require.NoError(t, err)
	require.Len(t, infos, 4)
	for i, info := range infos {
		assert.Equal(t, ref(encryptedClasses[i], "", 1), info.Ref)
		assert.True(t, info.Primary)
		assert.Equal(t, 1, info.SearchRank)
		assert.Equal(t, StateActive, info.State)
	}
	assert.EqualValues(t, 8, sum(keys, wraps), "one KEK and one class key per class")
	again, err := kr.Init(ctx)
	require.NoError(t, err)
	assert.Equal(t, infos, again, "Init is idempotent")
	assert.EqualValues(t, 8, sum(keys, wraps), "no new KEKs")

	// The encryption context of every wrap: the class key first (the class
	// is sealed before its first KEK is stored), then the KEK.
	assert.Equal(t, []kms.EncryptionContext{
		{ECClass: "high", ECPurpose: "class-key", ECKeyring: "test-ring"},
		{ECClass: "high", ECKEKVersion: "1", ECKeyring: "test-ring"},
	}, keys[uriHigh].contexts)

	for _, c := range encryptedClasses {
		p, err := kr.PrimaryKEK(ctx, envelope.Scope{Class: c})
		require.NoError(t, err)
		assert.Equal(t, ref(c, "", 1), p.Ref())
		k, err := kr.KEK(ctx, ref(c, "", 1))
		require.NoError(t, err)
		assert.Same(t, p, k)
		s, err := kr.SearchKEKs(ctx, envelope.Scope{Class: c})
		require.NoError(t, err)
		require.Len(t, s, 1)
		assert.Same(t, p, s[0])
	}
	assert.EqualValues(t, 0, sum(keys, unwraps), "KEKs generated here are cached, never unwrapped")

	// A second process unwraps them, once each, and each class key once.
	kr2, keys2 := e.process(testConfig())
	for _, c := range encryptedClasses {
		for i := 0; i < 3; i++ {
			k, err := kr2.KEK(ctx, ref(c, "", 1))
			require.NoError(t, err)
			assert.Equal(t, ref(c, "", 1), k.Ref())
		}
	}
	assert.EqualValues(t, 8, sum(keys2, unwraps))
	st := kr2.Stats()
	assert.EqualValues(t, 8, st.KMSUnwrapCalls)
	assert.EqualValues(t, 4, st.CacheMisses)
	assert.EqualValues(t, 8, st.CacheHits)
	assert.Equal(t, 4, st.CachedKEKs)
}

func TestLookupErrors(t *testing.T) {
	e := newEnv(t, nil)
	kr, _ := e.process(testConfig(), WithoutAutoCreate())
	_, err := kr.Init(ctx)
	require.NoError(t, err)
	cfgNoLow := testConfig()
	delete(cfgNoLow.Classes, "low")
	krNoLow, _ := e.process(cfgNoLow)

	tests := []struct {
		name string
		call func() error
		is   []error
		text []string
	}{
		{"unknown version", func() error { _, err := kr.KEK(ctx, ref(envelope.Critical, "", 7)); return err },
			[]error{envelope.ErrUnknownKey}, []string{"critical/v7", "latest is v1"}},
		{"version 0", func() error { _, err := kr.KEK(ctx, ref(envelope.Critical, "", 0)); return err },
			[]error{envelope.ErrUnknownKey}, nil},
		{"public has no keys", func() error { _, err := kr.PrimaryKEK(ctx, envelope.Scope{Class: envelope.Public}); return err },
			[]error{envelope.ErrInvalidInput}, []string{"public"}},
		{"unconfigured class", func() error { _, err := krNoLow.PrimaryKEK(ctx, envelope.Scope{Class: envelope.Low}); return err },
			[]error{envelope.ErrUnknownKey}, []string{"low", "not configured"}},
		{"no auto-create", func() error {
			_, err := kr.PrimaryKEK(ctx, envelope.Scope{Class: envelope.High, Tenant: "new"})
			return err
		}, []error{envelope.ErrUnknownKey}, []string{"high/tenant=new", uriHigh}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			require.Error(t, err)
			for _, want := range tt.is {
				assert.ErrorIs(t, err, want)
			}
			for _, s := range tt.text {
				assert.Contains(t, err.Error(), s)
			}
		})
	}
}

func TestTenantScoping(t *testing.T) {
	e := newEnv(t, nil)
	kr, keys := e.process(testConfig())
	// high is tenant scoped: each tenant gets its own KEK, created on use.
	a, err := kr.PrimaryKEK(ctx, envelope.Scope{Class: envelope.High, Tenant: "acme"})
	require.NoError(t, err)
	b, err := kr.PrimaryKEK(ctx, envelope.Scope{Class: envelope.High, Tenant: "globex"})
	require.NoError(t, err)
	assert.Equal(t, ref(envelope.High, "acme", 1), a.Ref())
	assert.Equal(t, ref(envelope.High, "globex", 1), b.Ref())
	assert.NotSame(t, a, b)
	assert.EqualValues(t, 1, keys[uriHigh].wraps.Load(), "one KMS wrap: the class key; tenant KEKs are wrapped by it")
	assert.Equal(t, purposeClassKey, keys[uriHigh].contexts[0][ECPurpose])
	list, err := kr.List(ctx)
	require.NoError(t, err)
	for _, i := range list {
		if i.Ref.Tenant != "" {
			assert.Equal(t, WrapClassKey, i.WrappedBy, "%s", i.Ref)
			assert.Empty(t, i.MasterKeyURI, "%s", i.Ref)
		}
	}
	// critical is not: a tenant is refused, tenant "" works.
	for _, call := range []func() error{
		func() error {
			_, err := kr.PrimaryKEK(ctx, envelope.Scope{Class: envelope.Critical, Tenant: "acme"})
			return err
		},
		func() error { _, err := kr.KEK(ctx, ref(envelope.Critical, "acme", 1)); return err },
		func() error {
			_, err := kr.SearchKEKs(ctx, envelope.Scope{Class: envelope.Critical, Tenant: "acme"})
			return err
		},
		func() error {
			_, err := kr.Rotate(ctx, envelope.Scope{Class: envelope.Critical, Tenant: "acme"})
			return err
		},
	} {
		err := call()
		assert.ErrorIs(t, err, envelope.ErrInvalidInput)
		assert.Contains(t, err.Error(), "not tenant-scoped")
	}
	c, err := kr.PrimaryKEK(ctx, envelope.Scope{Class: envelope.Critical})
	require.NoError(t, err)
	assert.Equal(t, ref(envelope.Critical, "", 1), c.Ref())
	h, err := kr.PrimaryKEK(ctx, envelope.Scope{Class: envelope.High})
	require.NoError(t, err)
	assert.Equal(t, ref(envelope.High, "", 1), h.Ref(), "tenant-scoped classes also have a tenant-less scope")
}

func TestRotateAndSearchKeys(t *testing.T) {
	e := newEnv(t, nil)
	kr, _ := e.process(testConfig())
	s := envelope.Scope{Class: envelope.High, Tenant: "acme"}
	_, err := kr.EnsureScope(ctx, s)
	require.NoError(t, err)
	v1, err := kr.PrimaryKEK(ctx, s)
	require.NoError(t, err)

	info, err := kr.Rotate(ctx, s)
	require.NoError(t, err)
	assert.Equal(t, ref(envelope.High, "acme", 2), info.Ref)
	p, err := kr.PrimaryKEK(ctx, s)
	require.NoError(t, err)
	assert.Equal(t, uint32(2), p.Ref().Version, "rotation seen at once in this process")
	old, err := kr.KEK(ctx, ref(envelope.High, "acme", 1))
	require.NoError(t, err)
	assert.Same(t, v1, old, "old version still opens values")
	search, err := kr.SearchKEKs(ctx, s)
	require.NoError(t, err)
	require.Len(t, search, 1)
	assert.Equal(t, uint32(1), search[0].Ref().Version, "rotation does not touch search keys")

	vs, err := kr.RotateSearch(ctx, s)
	require.NoError(t, err)
	assert.Equal(t, []uint32{2, 1}, vs)
	search, err = kr.SearchKEKs(ctx, s)
	require.NoError(t, err)
	require.Len(t, search, 2)
	assert.Equal(t, uint32(2), search[0].Ref().Version, "new values use the primary")
	assert.Equal(t, uint32(1), search[1].Ref().Version, "old search key still live")
	vs, err = kr.RotateSearch(ctx, s)
	require.NoError(t, err)
	assert.Equal(t, []uint32{2, 1}, vs, "idempotent")

	_, err = kr.Retire(ctx, ref(envelope.High, "acme", 1))
	assert.ErrorIs(t, err, ErrRefused, "a live search key cannot be retired")
	_, err = kr.Destroy(ctx, ref(envelope.High, "acme", 1))
	assert.ErrorIs(t, err, ErrRefused, "nor destroyed")

	vs, err = kr.FinishSearchRotation(ctx, s)
	require.NoError(t, err)
	assert.Equal(t, []uint32{2}, vs)

	list, err := kr.List(ctx)
	require.NoError(t, err)
	require.Len(t, list, 2)
	assert.Equal(t, StateDecryptOnly, list[0].State)
	assert.Equal(t, 0, list[0].SearchRank)
	assert.Equal(t, StateActive, list[1].State)
	assert.Equal(t, 1, list[1].SearchRank)
	assert.Equal(t, WrapClassKey, list[1].WrappedBy, "a tenant KEK is wrapped by its class key")
	assert.Empty(t, list[1].MasterKeyURI)
}

func TestRetireReactivateDestroy(t *testing.T) {
	e := newEnv(t, nil)
	kr, _ := e.process(testConfig())
	z := watchZero(kr)
	s := envelope.Scope{Class: envelope.Moderate}
	_, err := kr.Init(ctx)
	require.NoError(t, err)
	_, err = kr.Rotate(ctx, s)
	require.NoError(t, err)
	_, err = kr.Rotate(ctx, s)
	require.NoError(t, err)
	_, err = kr.RotateSearch(ctx, s)
	require.NoError(t, err)
	_, err = kr.FinishSearchRotation(ctx, s) // search key is now v3
	require.NoError(t, err)
	v1, v2, v3 := ref(envelope.Moderate, "", 1), ref(envelope.Moderate, "", 2), ref(envelope.Moderate, "", 3)
	cached, err := kr.KEK(ctx, v1)
	require.NoError(t, err)

	// v2 stopped being primary just now: a process may still seal under it.
	for _, op := range []func() (KEKInfo, error){
		func() (KEKInfo, error) { return kr.Retire(ctx, v2) },
		func() (KEKInfo, error) { return kr.Destroy(ctx, v2) },
	} {
		_, err := op()
		require.ErrorIs(t, err, ErrTooSoon)
		assert.ErrorIs(t, err, ErrRefused)
		assert.Contains(t, err.Error(), "v2 was primary until 2026-01-02 03:04:05 UTC; every process stops using it by 2026-01-02 03:07:05 UTC; 3m0s left")
	}
	e.clock.Advance(MaxStateAge + DemotionSlack - time.Second)
	_, err = kr.Destroy(ctx, v2)
	assert.ErrorContains(t, err, "1s left")
	e.clock.Advance(time.Second) // from now on, no process uses v1 or v2 as its primary

	errStillUsed := errors.New("table users still has 12 values under moderate/v1")
	tests := []struct {
		name  string
		op    func() (KEKInfo, error)
		is    []error
		state State // state of the version afterwards ("" : unchanged/ignored)
	}{
		{"retire primary refused", func() (KEKInfo, error) { return kr.Retire(ctx, v3) }, []error{ErrRefused}, ""},
		{"destroy primary refused", func() (KEKInfo, error) { return kr.Destroy(ctx, v3) }, []error{ErrRefused}, ""},
		{"retire unknown", func() (KEKInfo, error) { return kr.Retire(ctx, ref(envelope.Moderate, "", 9)) }, []error{envelope.ErrUnknownKey}, ""},
		{"retire v1", func() (KEKInfo, error) { return kr.Retire(ctx, v1) }, nil, StateRetired},
		{"retire v1 again is a no-op", func() (KEKInfo, error) { return kr.Retire(ctx, v1) }, nil, StateRetired},
		{"reactivate v1", func() (KEKInfo, error) { return kr.Reactivate(ctx, v1) }, nil, StateDecryptOnly},
		{"reactivate primary refused", func() (KEKInfo, error) { return kr.Reactivate(ctx, v3) }, []error{ErrRefused}, ""},
		{"destroy check refuses", func() (KEKInfo, error) {
			return kr.Destroy(ctx, v1, WithDestroyCheck(func(_ context.Context, r envelope.KEKRef) error {
				assert.Equal(t, v1, r)
				return errStillUsed
			}))
		}, []error{ErrRefused, errStillUsed}, ""},
		{"destroy v1", func() (KEKInfo, error) {
			return kr.Destroy(ctx, v1, WithDestroyCheck(func(context.Context, envelope.KEKRef) error { return nil }))
		}, nil, StateDestroyed},
		{"destroy v1 again is a no-op", func() (KEKInfo, error) { return kr.Destroy(ctx, v1) }, nil, StateDestroyed},
		{"reactivate destroyed refused", func() (KEKInfo, error) { return kr.Reactivate(ctx, v1) }, []error{ErrRefused, envelope.ErrKeyDestroyed}, ""},
		{"retire then destroy v2", func() (KEKInfo, error) {
			if _, err := kr.Retire(ctx, v2); err != nil {
				return KEKInfo{}, err
			}
			return kr.Destroy(ctx, v2)
		}, nil, StateDestroyed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			info, err := tt.op()
			if tt.is != nil {
				require.Error(t, err)
				for _, want := range tt.is {
					assert.ErrorIs(t, err, want)
				}
				assert.Contains(t, err.Error(), "moderate")
				return
			}
			require.NoError(t, err)
			if tt.state != "" {
				assert.Equal(t, tt.state, info.State)
			}
		})
	}

	// Destroyed: tombstone, not unknown; the cached copy was zeroed.
	_, err = kr.KEK(ctx, v1)
	assert.ErrorIs(t, err, envelope.ErrKeyDestroyed)
	assert.NotErrorIs(t, err, envelope.ErrUnknownKey)
	assert.Contains(t, err.Error(), "moderate/v1")
	assert.True(t, z.has(cached), "destroyed version zeroed at once")
	st, err := e.store.LoadScope(ctx, s)
	require.NoError(t, err)
	assert.Nil(t, st.Records[0].Wrapped, "key material deleted")
	assert.False(t, st.Records[0].DestroyedAt.IsZero())

	// Retired lookups fail with ErrKeyRetired + ErrKeyUnavailable.
	_, err = kr.Retire(ctx, v1)
	assert.ErrorIs(t, err, ErrRefused)
	kr2, _ := e.process(testConfig())
	_, err = kr2.KEK(ctx, v2)
	assert.ErrorIs(t, err, envelope.ErrKeyDestroyed)
	p, err := kr2.PrimaryKEK(ctx, s)
	require.NoError(t, err)
	assert.Equal(t, v3, p.Ref())
}

// zeroed records the KEKs a keyring zeroes.
type zeroed struct {
	mu   sync.Mutex
	keks map[*envelope.KEK]bool
}

func watchZero(kr *Keyring) *zeroed {
	z := &zeroed{keks: map[*envelope.KEK]bool{}}
	kr.onZero = func(k *envelope.KEK) {
		z.mu.Lock()
		defer z.mu.Unlock()
		z.keks[k] = true
	}
	return z
}

func (z *zeroed) has(k *envelope.KEK) bool {
	z.mu.Lock()
	defer z.mu.Unlock()
	return z.keks[k]
}

func (z *zeroed) count() int {
	z.mu.Lock()
	defer z.mu.Unlock()
	return len(z.keks)
}

func TestRetiredLookup(t *testing.T) {
	e := newEnv(t, nil)
	kr, _ := e.process(testConfig())
	s := envelope.Scope{Class: envelope.Low}
	_, err := kr.EnsureScope(ctx, s)
	require.NoError(t, err)
	_, err = kr.Rotate(ctx, s)
	require.NoError(t, err)
	_, err = kr.RotateSearch(ctx, s)
	require.NoError(t, err)
	_, err = kr.FinishSearchRotation(ctx, s)
	require.NoError(t, err)
	e.clock.Advance(MaxStateAge + DemotionSlack)
	_, err = kr.Retire(ctx, ref(envelope.Low, "", 1))
	require.NoError(t, err)
	_, err = kr.KEK(ctx, ref(envelope.Low, "", 1))
	assert.ErrorIs(t, err, ErrKeyRetired)
	assert.ErrorIs(t, err, envelope.ErrKeyUnavailable)
	_, err = kr.Reactivate(ctx, ref(envelope.Low, "", 1))
	require.NoError(t, err)
	_, err = kr.KEK(ctx, ref(envelope.Low, "", 1))
	assert.NoError(t, err)
}

func TestShredTenant(t *testing.T) {
	e := newEnv(t, nil)
	kr, _ := e.process(testConfig())
	z := watchZero(kr)
	acme := envelope.Scope{Class: envelope.High, Tenant: "acme"}
	globex := envelope.Scope{Class: envelope.High, Tenant: "globex"}
	_, err := kr.PrimaryKEK(ctx, acme)
	require.NoError(t, err)
	_, err = kr.Rotate(ctx, acme)
	require.NoError(t, err)
	held, err := kr.KEK(ctx, ref(envelope.High, "acme", 1))
	require.NoError(t, err)
	_, err = kr.PrimaryKEK(ctx, globex)
	require.NoError(t, err)
	// A scope of acme in a class that is no longer tenant-scoped is
	// shredded too.
	lowScoped := testConfig()
	lowScoped.Classes["low"] = ClassConfig{MasterKey: uriLow, TenantScoped: true}
	lowScoped.Classes["moderate"] = ClassConfig{MasterKey: uriModerate, TenantScoped: true}
	before, _ := e.process(lowScoped)
	_, err = before.EnsureScope(ctx, envelope.Scope{Class: envelope.Low, Tenant: "acme"})
	require.NoError(t, err)

	_, err = kr.ShredTenant(ctx, "")
	assert.ErrorIs(t, err, ErrRefused)

	// A keyring that does not know one of the tenant's classes refuses,
	// before destroying anything: it could not verify or re-seal them.
	_, err = before.EnsureScope(ctx, envelope.Scope{Class: envelope.Moderate, Tenant: "acme"})
	require.NoError(t, err)
	noModerate := testConfig()
	delete(noModerate.Classes, "moderate")
	partial, _ := e.process(noModerate)
	rep, err := partial.ShredTenant(ctx, "acme")
	assert.ErrorIs(t, err, ErrRefused)
	assert.ErrorContains(t, err, "class moderate is not configured")
	assert.Empty(t, rep.Destroyed)
	_, err = kr.KEK(ctx, ref(envelope.High, "acme", 1))
	require.NoError(t, err, "nothing destroyed")

	rep, err = kr.ShredTenant(ctx, "acme")
	require.NoError(t, err)
	assert.Equal(t, "acme", rep.Tenant)
	assert.Equal(t, e.clock.Now(), rep.At)
	assert.Equal(t, []envelope.Scope{acme, {Class: envelope.Moderate, Tenant: "acme"}, {Class: envelope.Low, Tenant: "acme"}}, rep.Scopes)
	require.Len(t, rep.Destroyed, 4)
	for _, d := range rep.Destroyed {
		assert.Equal(t, StateDestroyed, d.State)
		assert.Equal(t, e.clock.Now(), d.DestroyedAt)
	}
	assert.True(t, z.has(held), "shredded versions zeroed at once")

	for _, call := range []func() error{
		func() error { _, err := kr.PrimaryKEK(ctx, acme); return err },
		func() error { _, err := kr.SearchKEKs(ctx, acme); return err },
		func() error { _, err := kr.KEK(ctx, ref(envelope.High, "acme", 1)); return err },
	} {
		err := call()
		assert.ErrorIs(t, err, envelope.ErrKeyDestroyed)
		assert.Contains(t, err.Error(), "high/tenant=acme")
	}
	// Another process agrees, and does not recreate the scope.
	kr2, _ := e.process(testConfig())
	_, err = kr2.PrimaryKEK(ctx, acme)
	assert.ErrorIs(t, err, envelope.ErrKeyDestroyed)
	_, err = kr2.PrimaryKEK(ctx, globex)
	assert.NoError(t, err, "other tenants untouched")

	again, err := kr.ShredTenant(ctx, "acme")
	require.NoError(t, err)
	assert.Empty(t, again.Destroyed)
	assert.Len(t, again.AlreadyDestroyed, 4)

	// An operator may restart the tenant explicitly.
	info, err := kr.Rotate(ctx, acme)
	require.NoError(t, err)
	assert.Equal(t, uint32(3), info.Ref.Version)
	sk, err := kr.SearchKEKs(ctx, acme)
	require.NoError(t, err)
	assert.Equal(t, uint32(3), sk[0].Ref().Version)
}

func TestRewrapAll(t *testing.T) {
	e := newEnv(t, nil)
	kr, keys := e.process(testConfig())
	_, err := kr.Init(ctx)
	require.NoError(t, err)
	c := envelope.Scope{Class: envelope.Critical}
	_, err = kr.Rotate(ctx, c)
	require.NoError(t, err)
	_, err = kr.Rotate(ctx, c)
	require.NoError(t, err)
	_, err = kr.RotateSearch(ctx, c)
	require.NoError(t, err)
	_, err = kr.FinishSearchRotation(ctx, c)
	require.NoError(t, err)
	e.clock.Advance(MaxStateAge + DemotionSlack)
	_, err = kr.Destroy(ctx, ref(envelope.Critical, "", 1))
	require.NoError(t, err)

	t.Run("refusals", func(t *testing.T) {
		_, err := kr.RewrapAll(ctx, envelope.Critical, uriHigh)
		assert.ErrorIs(t, err, ErrInvalidConfig)
		assert.Contains(t, err.Error(), "never cross")
		_, err = kr.RewrapAll(ctx, envelope.Critical, "aws-kms://nope")
		assert.ErrorIs(t, err, ErrInvalidConfig)
		_, err = kr.RewrapAll(ctx, envelope.Public, uriNewCritical)
		assert.ErrorIs(t, err, envelope.ErrInvalidInput)
	})

	oldW, oldU := keys[uriCritical].wraps.Load(), keys[uriCritical].unwraps.Load()
	rep, err := kr.RewrapAll(ctx, envelope.Critical, uriNewCritical)
	require.NoError(t, err)
	assert.Equal(t, 2, rep.Rewrapped)
	assert.Equal(t, 1, rep.Destroyed)
	assert.True(t, rep.ClassKey, "the class key moved too")
	assert.Equal(t, []string{uriCritical}, rep.From)
	assert.Equal(t, ClassConfig{MasterKey: uriNewCritical, PreviousMasterKeys: []string{uriCritical}}, rep.Config.Classes["critical"],
		"the old master key stays trusted, as a previous one")
	assert.Equal(t, uriHigh, rep.Config.Classes["high"].MasterKey)
	require.NoError(t, rep.Config.Validate())
	assert.EqualValues(t, 3, keys[uriCritical].unwraps.Load()-oldU, "one unwrap per live KEK, and the class key")
	assert.EqualValues(t, 0, keys[uriCritical].wraps.Load()-oldW)
	assert.EqualValues(t, 3, keys[uriNewCritical].wraps.Load(), "one wrap per live KEK, and the class key")
	assert.Equal(t, uriNewCritical, kr.Config().Classes["critical"].MasterKey)

	// A new process with the new config reads every version even with the
	// old master key gone; one that dropped it from the configuration too.
	dropped := rep.Config.clone()
	dropped.Classes["critical"] = ClassConfig{MasterKey: uriNewCritical}
	kr2, keys2 := e.process(dropped)
	keys2[uriCritical].mode.Store(modeDenied)
	for v := uint32(2); v <= 3; v++ {
		_, err := kr2.KEK(ctx, ref(envelope.Critical, "", v))
		require.NoError(t, err)
	}
	// New KEKs go under the new master key.
	info, err := kr.Rotate(ctx, c)
	require.NoError(t, err)
	assert.Equal(t, uriNewCritical, info.MasterKeyURI)

	again, err := kr.RewrapAll(ctx, envelope.Critical, uriNewCritical)
	require.NoError(t, err)
	assert.Equal(t, 0, again.Rewrapped, "resumable: nothing left to do")
	assert.Equal(t, 3, again.AlreadyDone)
}

func TestRewrapInterruptedResumes(t *testing.T) {
	e := newEnv(t, nil)
	kr, keys := e.process(testConfig())
	for _, tenant := range []string{"", "a", "b", "c"} {
		_, err := kr.EnsureScope(ctx, envelope.Scope{Class: envelope.High, Tenant: tenant})
		require.NoError(t, err)
	}
	newHigh := "gcp-kms://projects/p/locations/europe-west1/keyRings/fc/cryptoKeys/high-2"
	nk := newMemKey(t, newHigh)
	kr.opener = kms.OpenerFunc(func(_ context.Context, uri string) (kms.MasterKey, error) {
		if uri == newHigh {
			return nk, nil
		}
		return keys[uri], nil
	})
	nk.mode.Store(modeDown)
	_, err := kr.RewrapAll(ctx, envelope.High, newHigh)
	require.Error(t, err)
	assert.ErrorIs(t, err, kms.ErrUnavailable)
	assert.Contains(t, err.Error(), newHigh)
	assert.Equal(t, uriHigh, kr.Config().Classes["high"].MasterKey, "config unchanged on failure")
	nk.mode.Store(modeUp)
	waitBreakers(t, kr)
	rep, err := kr.RewrapAll(ctx, envelope.High, newHigh)
	require.NoError(t, err)
	assert.Equal(t, 1, rep.Rewrapped, "the class-wide KEK")
	assert.True(t, rep.ClassKey)
	assert.Equal(t, 3, rep.UnderClassKey, "tenant KEKs move with their class key")
	for _, tenant := range []string{"a", "b", "c"} {
		_, err := kr.KEK(ctx, ref(envelope.High, tenant, 1))
		require.NoError(t, err)
	}
}

func TestListHasNoKeyMaterial(t *testing.T) {
	e := newEnv(t, nil)
	kr, _ := e.process(testConfig())
	_, err := kr.Init(ctx)
	require.NoError(t, err)
	list, err := kr.List(ctx)
	require.NoError(t, err)
	require.Len(t, list, 4)
	b, err := json.Marshal(list)
	require.NoError(t, err)
	all, err := e.store.ListScopes(ctx)
	require.NoError(t, err)
	for _, st := range all {
		for _, r := range st.Records {
			assert.NotContains(t, string(b), base64.StdEncoding.EncodeToString(r.Wrapped))
		}
	}
}

func TestUnwrapErrorChain(t *testing.T) {
	e := newEnv(t, nil)
	kr, _ := e.process(testConfig())
	_, err := kr.Init(ctx)
	require.NoError(t, err)

	// Revoked before the process verified anything: the class key fails.
	kr2, keys2 := e.process(testConfig())
	keys2[uriCritical].mode.Store(modeDenied)
	_, err = kr2.PrimaryKEK(ctx, envelope.Scope{Class: envelope.Critical})
	require.Error(t, err)
	assert.ErrorIs(t, err, envelope.ErrKeyUnavailable)
	assert.ErrorIs(t, err, kms.ErrAccessDenied)
	var ke *KeyError
	require.ErrorAs(t, err, &ke)
	assert.Equal(t, uriCritical, ke.URI)
	assert.Contains(t, err.Error(), "unwrap class key scope critical")
	assert.Contains(t, err.Error(), uriCritical)
	assert.EqualValues(t, 1, kr2.Stats().UnwrapErrors)

	// Revoked once the class key is cached: the KEK fails, naming its version.
	kr3, keys3 := e.process(testConfig())
	_, err = kr3.KEK(ctx, ref(envelope.Critical, "", 1))
	require.NoError(t, err)
	_, err = kr.Rotate(ctx, envelope.Scope{Class: envelope.Critical})
	require.NoError(t, err)
	keys3[uriCritical].mode.Store(modeDenied)
	_, err = kr3.KEK(ctx, ref(envelope.Critical, "", 2))
	assert.ErrorIs(t, err, envelope.ErrKeyUnavailable)
	assert.ErrorIs(t, err, kms.ErrAccessDenied)
	require.ErrorAs(t, err, &ke)
	assert.Equal(t, uint32(2), ke.Version)
	assert.Contains(t, err.Error(), "critical/v2")
}

func TestKeyringName(t *testing.T) {
	e := newEnv(t, nil)
	kr, _ := e.process(testConfig())
	_, err := kr.Init(ctx)
	require.NoError(t, err)
	other := testConfig()
	other.Name = "other-ring"
	kr2, _ := e.process(other)
	_, err = kr2.KEK(ctx, ref(envelope.Low, "", 1))
	assert.ErrorIs(t, err, kms.ErrAuthentication, "a KEK wrapped for one keyring does not unwrap in another")
}

// TestSearchKeysThroughEnvelope: deterministic ciphertexts follow the
// search-key lifecycle, not the primary.
func TestSearchKeysThroughEnvelope(t *testing.T) {
	e := newEnv(t, nil)
	kr, _ := e.process(testConfig())
	env := envelope.New(kr)
	b := envelope.Binding{Class: envelope.High, Tenant: "acme", Table: "users", Column: "email"}
	v := []byte("jane@example.com")
	before, err := env.SealDeterministic(ctx, b, v)
	require.NoError(t, err)

	_, err = kr.Rotate(ctx, b.Scope())
	require.NoError(t, err)
	same, err := env.SealDeterministic(ctx, b, v)
	require.NoError(t, err)
	assert.Equal(t, before, same, "rotating the primary leaves search keys alone")

	_, err = kr.RotateSearch(ctx, b.Scope())
	require.NoError(t, err)
	after, err := env.SealDeterministic(ctx, b, v)
	require.NoError(t, err)
	assert.NotEqual(t, before, after, "new values use the new search key")
	cands, err := env.DeterministicCandidates(ctx, b, v)
	require.NoError(t, err)
	assert.Equal(t, [][]byte{after, before}, cands, "during the transition both match")

	_, err = kr.FinishSearchRotation(ctx, b.Scope())
	require.NoError(t, err)
	cands, err = env.DeterministicCandidates(ctx, b, v)
	require.NoError(t, err)
	assert.Equal(t, [][]byte{after}, cands)
	pt, err := env.Open(ctx, b, before)
	require.NoError(t, err, "v1 is still decrypt-only: old values open")
	assert.Equal(t, v, pt)
}
