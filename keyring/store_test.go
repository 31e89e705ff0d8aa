package keyring

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/glebarez/sqlite"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/driver/mysql"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/fieldcrypt/fieldcrypt/audit"
	"github.com/fieldcrypt/fieldcrypt/envelope"
	"github.com/fieldcrypt/fieldcrypt/internal/testsvc"
)

// storeCase names a store factory. open returns a new handle on the same
// underlying storage each call, as a separate process would have (its own
// connection pool, its own file descriptors).
type storeCase struct {
	name string
	open func(t testing.TB) func() Store
}

func storeCases() []storeCase {
	cases := []storeCase{{"file", func(t testing.TB) func() Store {
		path := filepath.Join(t.TempDir(), "keks.json")
		return func() Store { return NewFileStore(path) }
	}}}
	for _, d := range testsvc.Dialects() {
		cases = append(cases, storeCase{"gorm-" + string(d), func(t testing.TB) func() Store {
			_, dsn := testsvc.OpenDSN(t, d)
			first := true
			return func() Store {
				db := openPool(t, dsn)
				ctx := context.Background()
				if first {
					first = false
					s, err := NewGormStore(ctx, db)
					require.NoError(t, err)
					return s
				}
				return NewGormStoreNoMigrate(db)
			}
		}})
	}
	return cases
}

// openPool opens a new connection pool on a testsvc DSN (CLI URL form).
func openPool(t testing.TB, dsn string) *gorm.DB {
	t.Helper()
	cfg := &gorm.Config{Logger: logger.Default.LogMode(logger.Silent)}
	var dial gorm.Dialector
	switch {
	case strings.HasPrefix(dsn, "sqlite://"):
		dial = sqlite.Open(strings.TrimPrefix(dsn, "sqlite://") + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)")
	case strings.HasPrefix(dsn, "postgres://"):
		dial = postgres.Open(dsn)
	case strings.HasPrefix(dsn, "mysql://"):
		u, err := url.Parse(dsn)
		require.NoError(t, err)
		pw, _ := u.User.Password()
		dial = mysql.Open(fmt.Sprintf("%s:%s@tcp(%s)%s?%s", u.User.Username(), pw, u.Host, u.Path, u.RawQuery))
	default:
		t.Fatalf("unknown dsn %q", dsn)
	}
	db, err := gorm.Open(dial, cfg)
	require.NoError(t, err)
	t.Cleanup(func() {
		if s, err := db.DB(); err == nil {
			_ = s.Close()
		}
	})
	return db
}

func rec(v uint32, st State) Record {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	r := Record{Version: v, State: st, MasterKeyURI: uriLow, Wrapped: []byte{byte(v), 1, 2, 3}, CreatedAt: now, UpdatedAt: now}
	if st == StateDestroyed {
		r.Wrapped, r.DestroyedAt = nil, now
	}
	return r
}

func TestStores(t *testing.T) {
	ctx := context.Background()
	scope := envelope.Scope{Class: envelope.High, Tenant: "acme"}
	for _, sc := range storeCases() {
		t.Run(sc.name, func(t *testing.T) {
			s := sc.open(t)()

			st, err := s.LoadScope(ctx, scope)
			require.NoError(t, err)
			assert.Empty(t, st.Records, "unknown scope loads empty")

			require.NoError(t, s.UpdateScope(ctx, scope, func(st *ScopeState) error {
				st.Records = append(st.Records, rec(1, StateActive))
				st.Search = []uint32{1}
				return nil
			}))
			require.NoError(t, s.UpdateScope(ctx, scope, func(st *ScopeState) error {
				st.Records[0].State = StateDecryptOnly
				st.Records = append(st.Records, rec(2, StateActive))
				return nil
			}))
			st, err = s.LoadScope(ctx, scope)
			require.NoError(t, err)
			require.Len(t, st.Records, 2)
			assert.Equal(t, StateDecryptOnly, st.Records[0].State)
			assert.Equal(t, StateActive, st.Records[1].State)
			assert.Equal(t, []byte{2, 1, 2, 3}, st.Records[1].Wrapped)
			assert.Equal(t, uriLow, st.Records[1].MasterKeyURI)
			assert.Equal(t, []uint32{1}, st.Search)
			assert.True(t, st.Records[1].CreatedAt.Equal(rec(2, StateActive).CreatedAt))

			tests := []struct {
				name string
				fn   func(*ScopeState) error
				want error
			}{
				{"fn error writes nothing", func(st *ScopeState) error {
					st.Records[0].State = StateRetired
					return errors.New("boom")
				}, nil},
				{"two primaries refused", func(st *ScopeState) error {
					st.Records[0].State = StateActive
					return nil
				}, ErrStore},
				{"no primary refused", func(st *ScopeState) error {
					st.Records[1].State = StateDecryptOnly
					return nil
				}, ErrStore},
				{"gap in versions refused", func(st *ScopeState) error {
					st.Records = append(st.Records, rec(4, StateDecryptOnly))
					return nil
				}, ErrStore},
				{"deleting refused", func(st *ScopeState) error {
					st.Records = st.Records[1:]
					return nil
				}, ErrStore},
				{"destroyed must not keep key material", func(st *ScopeState) error {
					st.Records[0].State = StateDestroyed
					return nil
				}, ErrStore},
				{"unknown search version refused", func(st *ScopeState) error {
					st.Search = []uint32{9}
					return nil
				}, ErrStore},
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					err := s.UpdateScope(ctx, scope, tt.fn)
					require.Error(t, err)
					if tt.want != nil {
						assert.ErrorIs(t, err, tt.want)
					}
					after, err := s.LoadScope(ctx, scope)
					require.NoError(t, err)
					assert.Equal(t, st.Records, after.Records, "nothing written")
				})
			}

			// Destroy v1, then it cannot come back.
			require.NoError(t, s.UpdateScope(ctx, scope, func(st *ScopeState) error {
				shred(&st.Records[0], time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC))
				st.Search = []uint32{2}
				return nil
			}))
			err = s.UpdateScope(ctx, scope, func(st *ScopeState) error {
				st.Records[0] = rec(1, StateDecryptOnly)
				return nil
			})
			assert.ErrorIs(t, err, ErrStore)
			st, err = s.LoadScope(ctx, scope)
			require.NoError(t, err)
			assert.Equal(t, StateDestroyed, st.Records[0].State)
			assert.Nil(t, st.Records[0].Wrapped)
			assert.Equal(t, uriLow, st.Records[0].MasterKeyURI, "tombstone keeps the URI")
			assert.True(t, st.Records[0].DestroyedAt.Equal(time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)))

			// Another scope, then list.
			other := envelope.Scope{Class: envelope.Critical}
			require.NoError(t, s.UpdateScope(ctx, other, func(st *ScopeState) error {
				st.Records = []Record{rec(1, StateActive)}
				st.Search = []uint32{1}
				return nil
			}))
			all, err := s.ListScopes(ctx)
			require.NoError(t, err)
			require.Len(t, all, 2)
			assert.Equal(t, other, all[0].Scope)
			assert.Equal(t, scope, all[1].Scope)
			assert.Len(t, all[1].Records, 2)
			assert.Equal(t, []uint32{2}, all[1].Search)
		})
	}
}

// TestConcurrentRotation runs rotations of one scope from several
// "processes" at once (separate keyrings over separate connection pools or
// file handles): versions must come out distinct and contiguous, with
// exactly one primary.
func TestConcurrentRotation(t *testing.T) {
	const procs, rotations = 8, 4
	ctx := context.Background()
	scope := envelope.Scope{Class: envelope.High, Tenant: "acme"}
	for _, sc := range storeCases() {
		t.Run(sc.name, func(t *testing.T) {
			open := sc.open(t)
			e := newEnv(t, open())
			krs := make([]*Keyring, procs)
			keys := make([]map[string]*memKey, procs)
			var stores []Store
			sink := &audit.Memory{}
			for i := range krs {
				stores = append(stores, open())
				krs[i], keys[i] = e.processOn(testConfig(), stores[i], WithAudit(sink))
			}
			defer func() {
				var retries int64
				for _, s := range stores {
					if g, ok := s.(*GormStore); ok {
						retries += g.retries.Load()
					}
				}
				t.Logf("conflicts retried: %d", retries)
			}()

			// Phase 1: every process meets the new tenant at once; one
			// version 1 is created, the others unwrap it.
			gate1 := make(chan struct{})
			var wg1 sync.WaitGroup
			refs := make([]envelope.KEKRef, procs)
			errs1 := make([]error, procs)
			for i := range krs {
				wg1.Add(1)
				go func(i int) {
					defer wg1.Done()
					<-gate1
					k, err := krs[i].PrimaryKEK(ctx, scope)
					if err == nil {
						refs[i] = k.Ref()
					}
					errs1[i] = err
				}(i)
			}
			close(gate1)
			wg1.Wait()
			var kekWraps, classKeyWraps int
			for i := range krs {
				require.NoError(t, errs1[i])
				assert.Equal(t, envelope.KEKRef{Class: scope.Class, Tenant: scope.Tenant, Version: 1}, refs[i])
				for _, ec := range keys[i][uriHigh].contexts {
					if ec[ECPurpose] != "" {
						classKeyWraps++
					} else {
						kekWraps++
					}
				}
			}
			created := 0
			for _, ev := range sink.Events() {
				if ev.Type == audit.KEKCreated && ev.Outcome == audit.OK {
					created++
				}
			}
			assert.Equal(t, 1, created, "one version 1 created across all processes")
			assert.Zero(t, kekWraps, "a tenant KEK is wrapped by the class key, not the KMS")
			assert.Equal(t, 1, classKeyWraps, "one class key created across all processes")

			start := time.Now()
			gate := make(chan struct{})
			var wg sync.WaitGroup
			errs := make(chan error, procs*rotations)
			versions := make(chan uint32, procs*rotations)
			for i := range krs {
				wg.Add(1)
				go func(kr *Keyring) {
					defer wg.Done()
					<-gate // all processes start together
					for j := 0; j < rotations; j++ {
						info, err := kr.Rotate(ctx, scope)
						if err != nil {
							errs <- err
							return
						}
						versions <- info.Ref.Version
					}
				}(krs[i])
			}
			close(gate)
			wg.Wait()
			close(errs)
			close(versions)
			for err := range errs {
				require.NoError(t, err)
			}
			seen := map[uint32]bool{}
			for v := range versions {
				assert.False(t, seen[v], "version %d returned twice", v)
				seen[v] = true
			}
			assert.Len(t, seen, procs*rotations)

			const total = procs*rotations + 1 // + version 1 of phase 1
			st, err := open().LoadScope(ctx, scope)
			require.NoError(t, err)
			require.Len(t, st.Records, total)
			active := 0
			for i, r := range st.Records {
				assert.Equal(t, uint32(i+1), r.Version)
				if r.State == StateActive {
					active++
					assert.Equal(t, uint32(total), r.Version, "primary is the newest")
				} else {
					assert.Equal(t, StateDecryptOnly, r.State)
				}
			}
			assert.Equal(t, 1, active, "exactly one primary")
			assert.Equal(t, []uint32{1}, st.Search, "rotation leaves search keys alone")
			if g, ok := open().(*GormStore); ok {
				var n int64
				require.NoError(t, g.db.Table(KEKTable).Where("is_primary IS NOT NULL").Count(&n).Error)
				assert.EqualValues(t, 1, n, "one row flagged primary in the database")
			}
			// Every process can read every version.
			fresh, _ := e.processOn(testConfig(), open())
			for v := uint32(1); v <= total; v++ {
				_, err := fresh.KEK(ctx, envelope.KEKRef{Class: scope.Class, Tenant: scope.Tenant, Version: v})
				require.NoError(t, err)
			}
			t.Logf("%d processes x %d rotations in %v", procs, rotations, time.Since(start))
		})
	}
}

// TestUniquePrimaryIndex checks the database itself refuses a second
// primary, independent of the scope lock.
func TestUniquePrimaryIndex(t *testing.T) {
	for _, d := range testsvc.Dialects() {
		t.Run(string(d), func(t *testing.T) { testUniquePrimaryIndex(t, d) })
	}
}

func testUniquePrimaryIndex(t *testing.T, d testsvc.Dialect) {
	ctx := context.Background()
	{
		// A pool of our own: testsvc shares one *gorm.Config between
		// dialects, so a MySQL open rewrites its clause builders for all.
		_, dsn := testsvc.OpenDSN(t, d)
		db := openPool(t, dsn)
		s, err := NewGormStore(ctx, db)
		require.NoError(t, err)
		scope := envelope.Scope{Class: envelope.Low}
		require.NoError(t, s.UpdateScope(ctx, scope, func(st *ScopeState) error {
			st.Records = []Record{rec(1, StateActive)}
			st.Search = []uint32{1}
			return nil
		}))
		row := rowOf(scope, rec(2, StateActive))
		err = db.Create(&row).Error
		require.Error(t, err, "second primary row must violate the unique index")
		row = rowOf(scope, rec(2, StateDecryptOnly))
		require.NoError(t, db.Create(&row).Error, "non-primary rows (NULL) do not collide")
		row = rowOf(scope, rec(2, StateDecryptOnly))
		require.Error(t, db.Create(&row).Error, "duplicate version refused")
	}
}

// TestConcurrentRotationConstraintsOnly disables the scope lock: the unique
// indexes (one row per version, one primary per scope) plus retries must
// still keep exactly one primary and distinct versions.
func TestConcurrentRotationConstraintsOnly(t *testing.T) {
	const procs, rotations = 6, 3
	ctx := context.Background()
	scope := envelope.Scope{Class: envelope.Moderate}
	for _, d := range []testsvc.Dialect{testsvc.Postgres, testsvc.MySQL} {
		t.Run(string(d), func(t *testing.T) {
			_, dsn := testsvc.OpenDSN(t, d)
			first, err := NewGormStore(ctx, openPool(t, dsn))
			require.NoError(t, err)
			e := newEnv(t, first)
			admin, _ := e.process(testConfig())
			_, err = admin.EnsureScope(ctx, scope)
			require.NoError(t, err)
			var stores []*GormStore
			var krs []*Keyring
			for i := 0; i < procs; i++ {
				s := NewGormStoreNoMigrate(openPool(t, dsn))
				s.noLock = true
				stores = append(stores, s)
				kr, _ := e.processOn(testConfig(), s)
				krs = append(krs, kr)
			}
			gate := make(chan struct{})
			var wg sync.WaitGroup
			errs := make(chan error, procs)
			for _, kr := range krs {
				wg.Add(1)
				go func(kr *Keyring) {
					defer wg.Done()
					<-gate
					for j := 0; j < rotations; j++ {
						if _, err := kr.Rotate(ctx, scope); err != nil {
							errs <- err
							return
						}
					}
				}(kr)
			}
			close(gate)
			wg.Wait()
			close(errs)
			for err := range errs {
				require.NoError(t, err)
			}
			st, err := first.LoadScope(ctx, scope)
			require.NoError(t, err)
			require.Len(t, st.Records, procs*rotations+1)
			active := 0
			for i, r := range st.Records {
				assert.Equal(t, uint32(i+1), r.Version)
				if r.State == StateActive {
					active++
				}
			}
			assert.Equal(t, 1, active)
			var retries int64
			for _, s := range stores {
				retries += s.retries.Load()
			}
			t.Logf("without the lock: %d conflicts retried", retries)
		})
	}
}
