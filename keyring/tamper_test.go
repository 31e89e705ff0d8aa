package keyring

import (
	"context"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fieldcrypt/fieldcrypt/audit"
	"github.com/fieldcrypt/fieldcrypt/envelope"
	"github.com/fieldcrypt/fieldcrypt/keyring/kms"
)

// The store-writer threat (docs/threat-model.md): someone who can write
// the keyring tables (a database administrator, an SQL injection) but
// cannot call the KMS. Each test tampers with the stored state as such an
// attacker would, with plain SQL on GormStore (SQLite, PostgreSQL,
// MariaDB) or by rewriting FileStore's file, and checks that the keyring
// refuses it, records a keyring.tamper event, and never seals or opens
// under the tampered data.

const uriAttacker = "local:///tmp/attacker.key"

var (
	critical = envelope.Scope{Class: envelope.Critical}
	highWide = envelope.Scope{Class: envelope.High}
)

// rawWrite replaces the stored state of st.Scope, bypassing the store's
// code and every check: plain SQL on a GormStore, a rewritten file for a
// FileStore.
func rawWrite(t testing.TB, store Store, st *ScopeState) {
	t.Helper()
	switch s := store.(type) {
	case *GormStore:
		class, tenant := st.Scope.Class.String(), st.Scope.Tenant
		db := s.db
		require.NoError(t, db.Exec("DELETE FROM "+KEKTable+" WHERE class = ? AND tenant = ?", class, tenant).Error)
		for _, r := range st.Records {
			require.NoError(t, db.Exec("INSERT INTO "+KEKTable+" (class, tenant, version, is_primary, state, wrapped_by, master_key_uri, wrapped_key, created_at, updated_at, demoted_at, destroyed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
				class, tenant, int64(r.Version), orNull(r.State == StateActive, true), string(r.State), orNull(r.WrappedBy != WrapMasterKey, string(r.WrappedBy)), r.MasterKeyURI, bytesOrNull(r.Wrapped),
				r.CreatedAt.UTC(), r.UpdatedAt.UTC(), orNull(!r.DemotedAt.IsZero(), r.DemotedAt.UTC()), orNull(!r.DestroyedAt.IsZero(), r.DestroyedAt.UTC())).Error)
		}
		var n int64
		require.NoError(t, db.Raw("SELECT COUNT(*) FROM "+ScopeTable+" WHERE class = ? AND tenant = ?", class, tenant).Scan(&n).Error)
		if n == 0 {
			require.NoError(t, db.Exec("INSERT INTO "+ScopeTable+" (class, tenant, search_versions, lock_seq, updated_at) VALUES (?, ?, '', 0, ?)", class, tenant, time.Now().UTC()).Error)
		}
		var ckURI, ckWrapped, ckCreated any
		if ck := st.ClassKey; ck != nil {
			ckURI, ckWrapped, ckCreated = ck.MasterKeyURI, ck.Wrapped, ck.CreatedAt.UTC()
		}
		require.NoError(t, db.Exec("UPDATE "+ScopeTable+" SET search_versions = ?, epoch = ?, mac = ?, class_key_uri = ?, class_key_wrapped = ?, class_key_created_at = ? WHERE class = ? AND tenant = ?",
			formatVersions(st.Search), orNull(st.sealed(), int64(st.Epoch)), bytesOrNull(st.MAC), ckURI, ckWrapped, ckCreated, class, tenant).Error)
	case *FileStore:
		all, err := s.read()
		require.NoError(t, err)
		all[st.Scope] = st
		require.NoError(t, s.write(all))
	default:
		t.Fatalf("no raw writer for %T", store)
	}
}

func orNull(ok bool, v any) any {
	if ok {
		return v
	}
	return nil
}

func bytesOrNull(b []byte) any {
	if len(b) == 0 {
		return nil
	}
	return b
}

func rawRead(t testing.TB, store Store, s envelope.Scope) *ScopeState {
	t.Helper()
	st, err := store.LoadScope(context.Background(), s)
	require.NoError(t, err)
	return st
}

// tamperFixture is a keyring with history. critical: v1 destroyed, v2
// retired, v3 decrypt-only (search key #2), v4 active (search key #1);
// high: the class-wide scope and tenant acme. It returns v1's wrapped key
// as it was before the destruction (the attacker kept a copy).
func tamperFixture(t *testing.T, store Store) (*env, *Keyring, []byte) {
	t.Helper()
	e := newEnv(t, store)
	admin, _ := e.process(testConfig())
	_, err := admin.Init(ctx)
	require.NoError(t, err)
	for range 3 {
		_, err = admin.Rotate(ctx, critical)
		require.NoError(t, err)
		_, err = admin.RotateSearch(ctx, critical)
		require.NoError(t, err)
		if v := rawRead(t, store, critical).maxVersion(); v < 4 {
			_, err = admin.FinishSearchRotation(ctx, critical)
			require.NoError(t, err)
		}
	}
	_, err = admin.EnsureScope(ctx, envelope.Scope{Class: envelope.High, Tenant: "acme"})
	require.NoError(t, err)
	e.clock.Advance(MaxStateAge + DemotionSlack)
	saved := append([]byte(nil), rawRead(t, store, critical).Records[0].Wrapped...)
	_, err = admin.Destroy(ctx, ref(envelope.Critical, "", 1))
	require.NoError(t, err)
	_, err = admin.Retire(ctx, ref(envelope.Critical, "", 2))
	require.NoError(t, err)
	st := rawRead(t, store, critical)
	require.Equal(t, []State{StateDestroyed, StateRetired, StateDecryptOnly, StateActive}, []State{st.Records[0].State, st.Records[1].State, st.Records[2].State, st.Records[3].State})
	require.Equal(t, []uint32{4, 3}, st.Search)
	return e, admin, saved
}

// victim opens a keyring as a new process would, with an audit sink, and
// with the attacker's master key reachable (to prove it is never used).
func (e *env) victim(attacker *memKey, sink audit.Sink, opts ...Option) *Keyring {
	e.t.Helper()
	keys := e.keys(uriCritical, uriHigh, uriModerate, uriLow, uriNewCritical)
	opener := kms.OpenerFunc(func(_ context.Context, uri string) (kms.MasterKey, error) {
		if uri == uriAttacker {
			return attacker, nil
		}
		if k, ok := keys[uri]; ok {
			return k, nil
		}
		return nil, &kms.Error{Op: "open", URI: uri, Err: kms.ErrKeyNotFound}
	})
	all := append([]Option{WithOpener(opener), withClock(e.clock.Now), WithAudit(sink)}, opts...)
	kr, err := New(testConfig(), e.store, all...)
	require.NoError(e.t, err)
	e.t.Cleanup(func() { _ = kr.Close() })
	return kr
}

// attackerKEK wraps a fresh KEK for ref under the attacker's master key,
// with the encryption context the keyring would use.
func attackerKEK(t *testing.T, attacker *memKey, ref envelope.KEKRef) []byte {
	t.Helper()
	raw := make([]byte, envelope.KEKSize)
	_, _ = rand.Read(raw)
	kr := &Keyring{name: "test-ring"}
	w, err := attacker.Wrap(ctx, raw, kr.ec(ref))
	require.NoError(t, err)
	attacker.wraps.Store(0)
	return w
}

func tamperEvents(sink *audit.Memory, class string) []audit.Event {
	var out []audit.Event
	for _, ev := range sink.Events() {
		if ev.Type == audit.KeyringTamper && ev.Class == class {
			out = append(out, ev)
		}
	}
	return out
}

func TestTamperingRefused(t *testing.T) {
	type tampering struct {
		name    string
		scopes  []envelope.Scope // scopes whose lookups must fail
		reason  string           // in the error and the audit event
		tamper  func(t *testing.T, store Store, attacker *memKey, saved []byte)
		version uint32 // a version whose KEK must not open
	}
	cases := []tampering{
		{name: "add an active version wrapped under an attacker's key", scopes: []envelope.Scope{critical}, reason: "MAC does not verify", version: 5,
			tamper: func(t *testing.T, store Store, attacker *memKey, _ []byte) {
				st := rawRead(t, store, critical)
				now := st.Records[3].UpdatedAt.Add(time.Second)
				st.Records[3].State, st.Records[3].DemotedAt = StateDecryptOnly, now
				st.Records = append(st.Records, Record{Version: 5, State: StateActive, MasterKeyURI: uriAttacker,
					Wrapped: attackerKEK(t, attacker, ref(envelope.Critical, "", 5)), CreatedAt: now, UpdatedAt: now})
				rawWrite(t, store, st)
			}},
		{name: "flip the primary to an old version", scopes: []envelope.Scope{critical}, reason: "MAC does not verify", version: 3,
			tamper: func(t *testing.T, store Store, _ *memKey, _ []byte) {
				st := rawRead(t, store, critical)
				st.Records[3].State = StateDestroyed // the newest out of the way, so the invariants hold
				st.Records[3].Wrapped, st.Records[3].DestroyedAt = nil, st.Records[3].UpdatedAt
				st.Records[2].State = StateActive
				st.Search = []uint32{3}
				rawWrite(t, store, st)
			}},
		{name: "revive a retired version", scopes: []envelope.Scope{critical}, reason: "MAC does not verify", version: 2,
			tamper: func(t *testing.T, store Store, _ *memKey, _ []byte) {
				st := rawRead(t, store, critical)
				st.Records[1].State = StateDecryptOnly
				rawWrite(t, store, st)
			}},
		{name: "revive a destroyed version from a saved copy of its wrapped key", scopes: []envelope.Scope{critical}, reason: "MAC does not verify", version: 1,
			tamper: func(t *testing.T, store Store, _ *memKey, saved []byte) {
				st := rawRead(t, store, critical)
				st.Records[0].State, st.Records[0].Wrapped, st.Records[0].DestroyedAt = StateDecryptOnly, saved, time.Time{}
				rawWrite(t, store, st)
			}},
		{name: "change a state", scopes: []envelope.Scope{critical}, reason: "MAC does not verify", version: 3,
			tamper: func(t *testing.T, store Store, _ *memKey, _ []byte) {
				st := rawRead(t, store, critical)
				st.Records[2].State = StateRetired
				rawWrite(t, store, st)
			}},
		{name: "delete the newest version", scopes: []envelope.Scope{critical}, reason: "MAC does not verify", version: 3,
			tamper: func(t *testing.T, store Store, _ *memKey, _ []byte) {
				st := rawRead(t, store, critical)
				st.Records = st.Records[:3]
				st.Records[2].State, st.Records[2].DemotedAt = StateActive, time.Time{}
				st.Search = []uint32{3}
				rawWrite(t, store, st)
			}},
		{name: "reorder the search keys", scopes: []envelope.Scope{critical}, reason: "MAC does not verify", version: 4,
			tamper: func(t *testing.T, store Store, _ *memKey, _ []byte) {
				st := rawRead(t, store, critical)
				st.Search = []uint32{3, 4}
				rawWrite(t, store, st)
			}},
		{name: "strip the MAC and change the state", scopes: []envelope.Scope{critical}, reason: "no MAC in a sealed class", version: 2,
			tamper: func(t *testing.T, store Store, _ *memKey, _ []byte) {
				st := rawRead(t, store, critical)
				st.Records[1].State = StateDecryptOnly
				st.MAC, st.Epoch = nil, 0
				rawWrite(t, store, st)
			}},
		{name: "break an invariant", scopes: []envelope.Scope{critical}, reason: "invariants", version: 3,
			tamper: func(t *testing.T, store Store, _ *memKey, _ []byte) {
				st := rawRead(t, store, critical)
				st.Search = []uint32{4, 9} // a search key that does not exist
				rawWrite(t, store, st)
			}},
		{name: "delete the class key", scopes: []envelope.Scope{critical}, reason: "class key was deleted", version: 4,
			tamper: func(t *testing.T, store Store, _ *memKey, _ []byte) {
				st := rawRead(t, store, critical)
				st.ClassKey = nil
				rawWrite(t, store, st)
			}},
		{name: "delete the class key and every MAC of the class-wide scope", scopes: []envelope.Scope{highWide}, reason: "other scopes of it are sealed", version: 1,
			tamper: func(t *testing.T, store Store, _ *memKey, _ []byte) {
				st := rawRead(t, store, highWide)
				st.ClassKey, st.MAC, st.Epoch = nil, nil, 0
				rawWrite(t, store, st)
			}},
		{name: "swap the class keys of two classes", scopes: []envelope.Scope{critical, highWide}, reason: "not configured for class", version: 4,
			tamper: func(t *testing.T, store Store, _ *memKey, _ []byte) {
				c, h := rawRead(t, store, critical), rawRead(t, store, highWide)
				c.ClassKey, h.ClassKey = h.ClassKey, c.ClassKey
				rawWrite(t, store, c)
				rawWrite(t, store, h)
			}},
		{name: "swap the class keys, relabelled with each class's master key", scopes: []envelope.Scope{critical, highWide}, reason: "does not unwrap", version: 4,
			tamper: func(t *testing.T, store Store, _ *memKey, _ []byte) {
				c, h := rawRead(t, store, critical), rawRead(t, store, highWide)
				c.ClassKey, h.ClassKey = h.ClassKey, c.ClassKey
				c.ClassKey.MasterKeyURI, h.ClassKey.MasterKeyURI = uriCritical, uriHigh
				rawWrite(t, store, c)
				rawWrite(t, store, h)
			}},
	}
	for _, sc := range storeCases() {
		t.Run(sc.name, func(t *testing.T) {
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					store := sc.open(t)()
					e, admin, saved := tamperFixture(t, store)
					attacker := newMemKey(t, uriAttacker)
					tc.tamper(t, store, attacker, saved)
					tampered := map[envelope.Scope]*ScopeState{}
					for _, s := range tc.scopes {
						tampered[s] = rawRead(t, store, s)
					}

					sink := &audit.Memory{}
					victim := e.victim(attacker, sink)
					env := envelope.New(victim)
					for _, s := range tc.scopes {
						lookups := []func() error{
							func() error { _, err := victim.PrimaryKEK(ctx, s); return err },
							func() error { _, err := victim.SearchKEKs(ctx, s); return err },
							func() error { _, err := victim.KEK(ctx, ref(s.Class, "", tc.version)); return err },
							func() error {
								_, err := env.Seal(ctx, envelope.Binding{Class: s.Class, Table: "t", Column: "c", Row: "1"}, []byte("x"))
								return err
							},
						}
						for i, call := range lookups {
							err := call()
							require.Error(t, err, "lookup %d of %s", i, s)
							assert.ErrorIs(t, err, envelope.ErrKeyUnavailable)
							assert.Contains(t, err.Error(), tc.reason)
							if !strings.Contains(tc.reason, "not configured") {
								assert.ErrorIs(t, err, ErrTampered)
							} else {
								assert.ErrorIs(t, err, ErrUntrustedKey)
							}
						}
						evs := tamperEvents(sink, s.Class.String())
						require.NotEmpty(t, evs, "a keyring.tamper event for %s", s)
						assert.Equal(t, audit.Error, evs[0].Outcome)
						assert.Contains(t, evs[0].Error, tc.reason)

						// The running process (class key cached, newer epochs
						// seen) refuses to build on it, for its own reason.
						_, err := admin.Rotate(ctx, s)
						require.Error(t, err)
						assert.True(t, errors.Is(err, ErrTampered) || errors.Is(err, ErrUntrustedKey), "%v", err)
						assert.Equal(t, tampered[s], rawRead(t, store, s), "nothing written over the tampered state")
					}
					assert.Zero(t, attacker.unwraps.Load(), "the attacker's master key is never asked to unwrap")
					assert.Zero(t, attacker.wraps.Load(), "nor to wrap")
				})
			}
		})
	}
}

// TestRollbackRefused: a complete, older, validly MACed state written back
// is refused by every process that saw a newer one; a process that never
// did cannot tell (documented in docs/threat-model.md).
func TestRollbackRefused(t *testing.T) {
	for _, sc := range storeCases() {
		t.Run(sc.name, func(t *testing.T) {
			store := sc.open(t)()
			e, admin, _ := tamperFixture(t, store)
			attacker := newMemKey(t, uriAttacker)
			old := rawRead(t, store, critical) // primary v4: saved by the attacker

			sink := &audit.Memory{}
			running := e.victim(attacker, sink)
			p, err := running.PrimaryKEK(ctx, critical)
			require.NoError(t, err)
			require.Equal(t, uint32(4), p.Ref().Version)
			_, err = admin.Rotate(ctx, critical) // v5: v4 is believed compromised
			require.NoError(t, err)
			e.clock.Advance(DefaultStateRefresh)
			_, _ = running.PrimaryKEK(ctx, critical)
			running.settle()
			p, err = running.PrimaryKEK(ctx, critical)
			require.NoError(t, err)
			require.Equal(t, uint32(5), p.Ref().Version)

			rawWrite(t, store, old) // make v4 primary again
			e.clock.Advance(DefaultStateRefresh)
			_, _ = running.PrimaryKEK(ctx, critical) // the last verified state, while the store is re-read
			running.settle()
			_, err = running.PrimaryKEK(ctx, critical)
			assert.ErrorIs(t, err, ErrTampered)
			assert.ErrorContains(t, err, "older than epoch")
			require.NotEmpty(t, tamperEvents(sink, "critical"))
			_, err = admin.Rotate(ctx, critical)
			assert.ErrorIs(t, err, ErrTampered, "the process that wrote the newer state refuses too")
			assert.Equal(t, old, rawRead(t, store, critical))

			// A fresh process cannot tell a restored backup from the truth.
			fresh := e.victim(attacker, &audit.Memory{})
			p, err = fresh.PrimaryKEK(ctx, critical)
			require.NoError(t, err)
			assert.Equal(t, uint32(4), p.Ref().Version, "not detected without a memory of the newer state")
		})
	}
}

// TestUntrustedMasterKeyRefused: the stored master key URI only selects
// among configured ones, sealed or not: a version stored under any other
// key is never unwrapped, and is audited.
func TestUntrustedMasterKeyRefused(t *testing.T) {
	e := newEnv(t, nil)
	attacker := newMemKey(t, uriAttacker)
	// An unsealed (legacy) store: only the URI check stands between the
	// attacker and the application.
	legacy := &ScopeState{Scope: critical, Search: []uint32{1}}
	now := e.clock.Now()
	legacy.Records = []Record{{Version: 1, State: StateActive, MasterKeyURI: uriAttacker,
		Wrapped: attackerKEK(t, attacker, ref(envelope.Critical, "", 1)), CreatedAt: now, UpdatedAt: now}}
	rawWrite(t, e.store, legacy)

	sink := &audit.Memory{}
	kr := e.victim(attacker, sink, func(k *Keyring) { k.allowUnsealed = true })
	_, err := kr.PrimaryKEK(ctx, critical)
	require.ErrorIs(t, err, ErrUntrustedKey)
	assert.ErrorIs(t, err, envelope.ErrKeyUnavailable)
	assert.ErrorContains(t, err, "not configured for class critical (configured: "+uriCritical+")")
	assert.Zero(t, attacker.unwraps.Load())
	evs := tamperEvents(sink, "critical")
	require.Len(t, evs, 1)
	assert.Equal(t, uriAttacker, evs[0].MasterKeyURI)
	assert.Equal(t, uint32(1), evs[0].KEKVersion)
}
