package keyring

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fieldcrypt/fieldcrypt/envelope"
)

func TestInUseUntil(t *testing.T) {
	at := time.Date(2026, 3, 4, 14, 2, 10, 0, time.UTC)
	bound := MaxStateAge + DemotionSlack
	tests := []struct {
		name string
		info KEKInfo
		want time.Time
	}{
		{"demoted", KEKInfo{State: StateDecryptOnly, DemotedAt: at, UpdatedAt: at.Add(time.Hour)}, at.Add(bound)},
		{"retired after demotion", KEKInfo{State: StateRetired, DemotedAt: at, UpdatedAt: at.Add(time.Hour)}, at.Add(bound)},
		{"demoted before DemotedAt was recorded: UpdatedAt", KEKInfo{State: StateDecryptOnly, UpdatedAt: at}, at.Add(bound)},
		{"primary: in use", KEKInfo{State: StateActive, UpdatedAt: at}, time.Time{}},
		{"destroyed", KEKInfo{State: StateDestroyed, DemotedAt: at}, time.Time{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, tt.info.InUseUntil())
		})
	}
}

// TestForceSkipsTheWait: Force destroys and retires at once; the destroy
// checks still run.
func TestForceSkipsTheWait(t *testing.T) {
	e := newEnv(t, nil)
	kr, _ := e.process(testConfig())
	s := envelope.Scope{Class: envelope.Low}
	_, err := kr.Init(ctx)
	require.NoError(t, err)
	rotateWithSearch(t, kr, s, 2)
	list, err := kr.List(ctx)
	require.NoError(t, err)
	for _, i := range list {
		if i.Ref.Class == envelope.Low && i.Ref.Version < 3 {
			assert.Equal(t, e.clock.Now(), i.DemotedAt, "%s", i.Ref)
			assert.Equal(t, e.clock.Now().Add(3*time.Minute), i.InUseUntil())
		}
	}

	checked := 0
	check := WithDestroyCheck(func(context.Context, envelope.KEKRef) error { checked++; return nil })
	_, err = kr.Destroy(ctx, ref(envelope.Low, "", 1), check)
	require.ErrorIs(t, err, ErrTooSoon)
	assert.Zero(t, checked, "refused before the checks (which may ask a person)")
	info, err := kr.Destroy(ctx, ref(envelope.Low, "", 1), Force(), check)
	require.NoError(t, err)
	assert.Equal(t, StateDestroyed, info.State)
	assert.Equal(t, 1, checked)
	info, err = kr.Retire(ctx, ref(envelope.Low, "", 2), Force())
	require.NoError(t, err)
	assert.Equal(t, StateRetired, info.State)
}

// TestWriterLearnsDestruction: a process whose primary is destroyed
// elsewhere (a shredded tenant, or a forced destroy) zeroes the KEK at its
// next state read, within StateRefresh plus one store read, so a seal
// still holding it fails with envelope.ErrKeyDestroyed instead of storing
// a value nobody can read; its next seals use the new primary, or fail.
func TestWriterLearnsDestruction(t *testing.T) {
	e := newEnv(t, nil)
	admin, _ := e.process(testConfig())
	app, _ := e.process(testConfig())
	z := watchZero(app)
	env := envelope.New(app)
	acme := envelope.Binding{Class: envelope.High, Tenant: "acme", Table: "users", Column: "email", Row: "1"}
	low := envelope.Binding{Class: envelope.Low, Table: "users", Column: "note", Row: "1"}
	for _, b := range []envelope.Binding{acme, low} {
		_, err := env.Seal(ctx, b, []byte("v"))
		require.NoError(t, err)
	}
	heldAcme, err := app.PrimaryKEK(ctx, acme.Scope())
	require.NoError(t, err)
	heldLow, err := app.PrimaryKEK(ctx, low.Scope())
	require.NoError(t, err)

	_, err = admin.ShredTenant(ctx, "acme")
	require.NoError(t, err)
	rotateWithSearch(t, admin, low.Scope(), 1)
	_, err = admin.Destroy(ctx, ref(envelope.Low, "", 1), Force())
	require.NoError(t, err)

	e.clock.Advance(DefaultStateRefresh)
	_, _ = app.PrimaryKEK(ctx, acme.Scope()) // the state read starts
	_, _ = app.PrimaryKEK(ctx, low.Scope())
	app.settle()
	assert.True(t, z.has(heldAcme) && z.has(heldLow), "zeroed when the destruction was read")

	_, err = envelope.New(fixedKEK{heldAcme}).Seal(ctx, acme, []byte("in flight"))
	assert.ErrorIs(t, err, envelope.ErrKeyDestroyed, "a seal still holding the shredded primary fails")
	_, err = envelope.New(fixedKEK{heldLow}).Seal(ctx, low, []byte("in flight"))
	assert.ErrorIs(t, err, envelope.ErrKeyDestroyed, "so does one holding the force-destroyed primary")
	_, err = env.Seal(ctx, acme, []byte("next"))
	assert.ErrorIs(t, err, envelope.ErrKeyDestroyed, "the tenant is gone")
	ct, err := env.Seal(ctx, low, []byte("next"))
	require.NoError(t, err)
	h, err := envelope.Inspect(ct)
	require.NoError(t, err)
	assert.Equal(t, uint32(2), h.KEKVersion, "the new primary")
}

// fixedKEK is a KeySource that hands out one KEK, as a seal that fetched
// it before the destruction would hold it.
type fixedKEK struct{ kek *envelope.KEK }

func (f fixedKEK) PrimaryKEK(context.Context, envelope.Scope) (*envelope.KEK, error) {
	return f.kek, nil
}

func (f fixedKEK) KEK(context.Context, envelope.KEKRef) (*envelope.KEK, error) { return f.kek, nil }

func (f fixedKEK) SearchKEKs(context.Context, envelope.Scope) ([]*envelope.KEK, error) {
	return []*envelope.KEK{f.kek}, nil
}
