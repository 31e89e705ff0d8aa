package keyring

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fieldcrypt/fieldcrypt/audit"
	"github.com/fieldcrypt/fieldcrypt/envelope"
	"github.com/fieldcrypt/fieldcrypt/keyring/kms"
)

func tenantNames(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("tenant-%05d", i)
	}
	return out
}

// TestManyTenantsFewKMSCalls: a cold process touching 5,000 tenants of a
// tenant-scoped class makes 2 KMS calls for that class (its class key and
// its class-wide KEK), not one per tenant. Shredding one tenant leaves the
// others readable, and its values, in a restored backup of the data as
// anywhere, stay unreadable. On every database.
func TestManyTenantsFewKMSCalls(t *testing.T) {
	n := 5000
	if testing.Short() || raceEnabled {
		n = 500
	}
	for _, sc := range storeCases() {
		if sc.name == "file" {
			continue // one JSON file read per lookup: TestEnsureTenants covers FileStore
		}
		t.Run(sc.name, func(t *testing.T) {
			e := newEnv(t, sc.open(t)())
			names := tenantNames(n)
			admin, _ := e.process(testConfig())
			_, err := admin.Init(ctx)
			require.NoError(t, err)
			start := time.Now()
			rep, err := admin.EnsureTenants(ctx, names)
			require.NoError(t, err)
			require.Len(t, rep.Created, n)
			provision := time.Since(start)

			// The data: one value per tenant, and one of no tenant.
			env := envelope.New(admin)
			bind := func(tenant string) envelope.Binding {
				return envelope.Binding{Class: envelope.High, Tenant: tenant, Table: "patients", Column: "email", Row: "1"}
			}
			backup := map[string][]byte{}
			for _, tenant := range append([]string{""}, names...) {
				ct, err := env.Seal(ctx, bind(tenant), []byte("mail of "+tenant))
				require.NoError(t, err)
				backup[tenant] = ct
			}

			// A cold process reads every tenant's value.
			reader, keys := e.process(testConfig())
			renv := envelope.New(reader)
			start = time.Now()
			for tenant, ct := range backup {
				pt, err := renv.Open(ctx, bind(tenant), ct)
				require.NoError(t, err, tenant)
				require.Equal(t, "mail of "+tenant, string(pt))
			}
			read := time.Since(start)
			high := keys[uriHigh]
			assert.EqualValues(t, 2, high.unwraps.Load()+high.wraps.Load(), "KMS calls for class high: the class key and the class-wide KEK, for %d tenants", n)
			assert.EqualValues(t, n, reader.Stats().ClassKeyUnwraps)

			// Shred one tenant: its values are gone, in the restored data
			// backup as in the database; every other tenant still reads.
			victim := names[n/2]
			_, err = admin.ShredTenant(ctx, victim)
			require.NoError(t, err)
			e.clock.Advance(DefaultStateRefresh)
			_, _ = renv.Open(ctx, bind(victim), backup[victim]) // served while one read refreshes the state
			reader.settle()
			fresh, freshKeys := e.process(testConfig())
			for _, kr := range []*Keyring{reader, fresh} {
				renv := envelope.New(kr)
				_, err = renv.Open(ctx, bind(victim), backup[victim])
				assert.ErrorIs(t, err, envelope.ErrKeyDestroyed)
				for i := 0; i < n; i += n / 50 {
					if names[i] == victim {
						continue
					}
					_, err := renv.Open(ctx, bind(names[i]), backup[names[i]])
					require.NoError(t, err, names[i])
				}
			}
			assert.EqualValues(t, 1, freshKeys[uriHigh].unwraps.Load(), "the fresh process: the class key only")
			t.Logf("%d tenants: provisioned in %v (%v/tenant); a cold process read them all in %v with %d KMS calls for the class (%+v)",
				n, provision.Round(time.Millisecond), (provision / time.Duration(n)).Round(time.Microsecond), read.Round(time.Millisecond),
				high.unwraps.Load()+high.wraps.Load(), reader.Stats())
		})
	}
}

// TestEnsureTenants: bulk provisioning is idempotent, creates each scope
// once when two processes run it at once, leaves existing scopes (and
// shredded ones) alone, audits each creation, makes no KMS call per
// tenant, and writes states a lookup verifies. On every store.
func TestEnsureTenants(t *testing.T) {
	const n = 600 // more than one batch
	for _, sc := range storeCases() {
		t.Run(sc.name, func(t *testing.T) {
			open := sc.open(t)
			e := newEnv(t, open())
			sink := &audit.Memory{}
			a, aKeys := e.processOn(testConfig(), open(), WithAudit(sink))
			b, _ := e.processOn(testConfig(), open(), WithAudit(sink))
			names := tenantNames(n)
			// Scopes that exist already: one in use, one shredded.
			_, err := a.EnsureScope(ctx, envelope.Scope{Class: envelope.High, Tenant: names[1]})
			require.NoError(t, err)
			_, err = a.EnsureScope(ctx, envelope.Scope{Class: envelope.High, Tenant: names[2]})
			require.NoError(t, err)
			_, err = a.ShredTenant(ctx, names[2])
			require.NoError(t, err)
			wrapsBefore := sum(aKeys, wraps)

			var wg sync.WaitGroup
			reps := make([]TenantsReport, 2)
			errs := make([]error, 2)
			for i, kr := range []*Keyring{a, b} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					reps[i], errs[i] = kr.EnsureTenants(ctx, append(names, names[0])) // a duplicate too
				}()
			}
			wg.Wait()
			require.NoError(t, errs[0])
			require.NoError(t, errs[1])
			assert.Equal(t, n-2, len(reps[0].Created)+len(reps[1].Created), "each new scope created once")
			assert.Equal(t, n+2, reps[0].Existing+reps[1].Existing)
			assert.Zero(t, sum(aKeys, wraps)-wrapsBefore, "no KMS call per tenant")
			created := 0
			for _, ev := range sink.Events() {
				if ev.Type == audit.KEKCreated && ev.Outcome == audit.OK {
					created++
				}
			}
			assert.Equal(t, n-2+2, created, "kek.created per scope (two by EnsureScope before)")

			again, err := a.EnsureTenants(ctx, names)
			require.NoError(t, err)
			assert.Empty(t, again.Created)
			assert.Equal(t, n, again.Existing)

			c, _ := e.processOn(testConfig(), open())
			for _, tenant := range []string{names[0], names[n-1]} {
				k, err := c.PrimaryKEK(ctx, envelope.Scope{Class: envelope.High, Tenant: tenant})
				require.NoError(t, err)
				assert.Equal(t, ref(envelope.High, tenant, 1), k.Ref())
			}
			_, err = c.PrimaryKEK(ctx, envelope.Scope{Class: envelope.High, Tenant: names[2]})
			assert.ErrorIs(t, err, envelope.ErrKeyDestroyed, "a shredded tenant is not recreated")

			_, err = a.EnsureTenants(ctx, []string{"x", ""})
			assert.ErrorIs(t, err, envelope.ErrInvalidInput)
		})
	}
}

// TestClassKeyWrapBinding: a tenant KEK wrapped by the class key is bound
// to its keyring, class, tenant and version. A store writer who moves one
// to another tenant, or relabels its wrapping, is caught by the MAC; and
// even with the MAC recomputed (white-box: a writer cannot), the moved
// KEK does not unwrap. On every store.
func TestClassKeyWrapBinding(t *testing.T) {
	acme, globex := envelope.Scope{Class: envelope.High, Tenant: "acme"}, envelope.Scope{Class: envelope.High, Tenant: "globex"}
	for _, sc := range storeCases() {
		t.Run(sc.name, func(t *testing.T) {
			e := newEnv(t, sc.open(t)())
			admin, _ := e.process(testConfig())
			for _, s := range []envelope.Scope{acme, globex} {
				_, err := admin.EnsureScope(ctx, s)
				require.NoError(t, err)
			}
			a, g := rawRead(t, e.store, acme), rawRead(t, e.store, globex)
			require.Equal(t, WrapClassKey, g.Records[0].WrappedBy)

			for _, tc := range []struct {
				name  string
				forge bool
				edit  func(st *ScopeState)
			}{
				{"another tenant's KEK", false, func(st *ScopeState) { st.Records[0].Wrapped = a.Records[0].Wrapped }},
				{"wrapping relabelled", false, func(st *ScopeState) {
					st.Records[0].WrappedBy, st.Records[0].MasterKeyURI = WrapMasterKey, uriHigh
				}},
				{"another tenant's KEK, MAC recomputed", true, func(st *ScopeState) { st.Records[0].Wrapped = a.Records[0].Wrapped }},
			} {
				t.Run(tc.name, func(t *testing.T) {
					st := g.Clone()
					tc.edit(st)
					if tc.forge {
						macKey, err := admin.classMAC(ctx, envelope.High, nil)
						require.NoError(t, err)
						st.MAC = admin.stateMAC(macKey, st)
					}
					rawWrite(t, e.store, st)
					defer rawWrite(t, e.store, g)
					sink := &audit.Memory{}
					kr, _ := e.process(testConfig(), WithAudit(sink))
					_, err := kr.PrimaryKEK(ctx, globex)
					require.ErrorIs(t, err, ErrTampered)
					assert.ErrorIs(t, err, envelope.ErrKeyUnavailable)
					assert.NotEmpty(t, tamperEvents(sink, "high"))
				})
			}
		})
	}
}

// TestRevocationReachesTenantKEKs: tenant KEKs unwrapped through the class
// key live no longer than it: when the master key refuses the class key
// (revoked), they leave the cache at the same refresh, and lookups fail
// with the KMS's answer. When the KMS is merely down, they are served
// until MaxAge, like any KEK.
func TestRevocationReachesTenantKEKs(t *testing.T) {
	acme := envelope.Scope{Class: envelope.High, Tenant: "acme"}
	e := newEnv(t, nil)
	admin, _ := e.process(testConfig())
	_, err := admin.EnsureScope(ctx, acme)
	require.NoError(t, err)

	app, keys := e.process(testConfig())
	z := watchZero(app)
	held, err := app.PrimaryKEK(ctx, acme)
	require.NoError(t, err)

	keys[uriHigh].mode.Store(modeDown)
	e.clock.Advance(DefaultCacheTTL)
	for range 3 {
		_, err = app.PrimaryKEK(ctx, acme)
		require.NoError(t, err, "served stale while the KMS is down")
		app.settle()
	}

	keys[uriHigh].mode.Store(modeDenied)
	waitBreakers(t, app)
	e.clock.Advance(30 * time.Second) // the refresh retry interval
	_, _ = app.PrimaryKEK(ctx, acme)  // starts the refresh (served stale, unless the refresh wins the race)
	app.settle()
	_, err = app.PrimaryKEK(ctx, acme)
	assert.ErrorIs(t, err, kms.ErrAccessDenied)
	assert.ErrorIs(t, err, envelope.ErrKeyUnavailable)
	e.clock.Advance(time.Minute)
	_, _ = app.KEK(ctx, ref(envelope.Low, "", 1)) // any slow path sweeps
	assert.True(t, z.has(held), "zeroed after the grace period")
}
