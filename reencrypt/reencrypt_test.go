package reencrypt

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/fieldcrypt/fieldcrypt/envelope"
	"github.com/fieldcrypt/fieldcrypt/internal/telemetry/telemetrytest"
	"github.com/fieldcrypt/fieldcrypt/internal/testsvc"
)

func TestRowKey(t *testing.T) {
	u := [16]byte{0x12, 0x3e, 0x45, 0x67, 0xe8, 0x9b, 0x12, 0xd3, 0xa4, 0x56, 0x42, 0x66, 0x14, 0x17, 0x40, 0x00}
	tests := []struct {
		name string
		in   any
		want string
	}{
		{"int64", int64(-42), "-42"},
		{"int", 7, "7"},
		{"uint32", uint32(4000000000), "4000000000"},
		{"string", "Order-ABC", "Order-ABC"},
		{"bytes", []byte("k1"), "k1"},
		{"uuid array", u, "123e4567-e89b-12d3-a456-426614174000"},
		{"uuid pointer", &u, "123e4567-e89b-12d3-a456-426614174000"},
		{"nil", nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { assert.Equal(t, tt.want, RowKey(tt.in)) })
	}
}

func TestValidation(t *testing.T) {
	db := testsvc.Open(t, testsvc.SQLite)
	_, env := newKeys()
	tests := []struct {
		name string
		col  Column
		opts Options
	}{
		{"injection in table", Column{Table: "t; DROP TABLE x", PK: "id", Column: "v", Class: envelope.High}, Options{}},
		{"public class", Column{Table: "t", PK: "id", Column: "v", Class: envelope.Public}, Options{}},
		{"bad mode", Column{Table: "t", PK: "id", Column: "v", Class: envelope.High}, Options{Mode: 9}},
		{"huge batch", Column{Table: "t", PK: "id", Column: "v", Class: envelope.High}, Options{BatchSize: 100000}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Run(context.Background(), db, env, tt.col, tt.opts)
			require.ErrorIs(t, err, ErrInvalidOptions)
		})
	}
}

// TestModes runs every mode on every database, binary and text columns.
func TestModes(t *testing.T) {
	const n = 1234
	for _, d := range testsvc.Dialects() {
		for _, text := range []bool{false, true} {
			form := "binary"
			if text {
				form = "text"
			}
			t.Run(string(d)+"/"+form, func(t *testing.T) {
				t.Run("rewrap", func(t *testing.T) {
					db := testsvc.Open(t, d)
					keys, env := newKeys()
					col := testColumn("items", text)
					createTable(t, db, col.Table, text)
					seed(t, db, env, col, n, func(id int64) string {
						switch id % 10 {
						case 0:
							return "null"
						case 5:
							return "pt"
						}
						return "ct"
					})
					before := values(t, db, col)
					v2 := keys.Rotate(scope)
					var events []Progress
					sum, err := Run(context.Background(), db, env, col, Options{Workers: 2, BatchSize: 100, ChunkSize: 300, Progress: func(p Progress) { events = append(events, p) }})
					require.NoError(t, err)
					assert.Equal(t, int64(n), sum.Scanned)
					assert.Equal(t, int64(n-2*123), sum.Changed) // 1234 rows: 123 NULL, 123 plaintext
					assert.Equal(t, int64(123), sum.Nulls)
					assert.Equal(t, int64(123), sum.Plaintext)
					assert.Zero(t, sum.Failed)
					assert.True(t, sum.JobFinished)
					require.NotEmpty(t, events)
					last := events[len(events)-1]
					assert.True(t, last.Final)
					assert.Equal(t, int64(n), last.Total)
					assert.Equal(t, int64(n), last.Done)
					after := values(t, db, col)
					for id, v := range after {
						switch {
						case v == nil || !envelope.IsCiphertext(v):
							assert.Equal(t, before[id], v, "row %d untouched", id)
						default:
							pt, h := openValue(t, env, col, id, v)
							assert.Equal(t, plain(id), pt)
							assert.Equal(t, v2, h.KEKVersion)
							assert.Equal(t, text, strings.HasPrefix(string(v), envelope.TextPrefix))
						}
					}
					// Rerun: default job id replans; everything is current.
					sum, err = Run(context.Background(), db, env, col, Options{})
					require.NoError(t, err)
					assert.Zero(t, sum.Changed)
					assert.Equal(t, int64(n-2*123), sum.Current)
				})
				t.Run("full", func(t *testing.T) {
					db := testsvc.Open(t, d)
					keys, env := newKeys()
					col := testColumn("items", text)
					createTable(t, db, col.Table, text)
					seed(t, db, env, col, 300, func(id int64) string { return "ct" })
					before := values(t, db, col)
					v2 := keys.Rotate(scope)
					sum, err := Run(context.Background(), db, env, col, Options{Mode: Full, BatchSize: 64})
					require.NoError(t, err)
					assert.Equal(t, int64(300), sum.Changed)
					for id, v := range values(t, db, col) {
						pt, h := openValue(t, env, col, id, v)
						assert.Equal(t, plain(id), pt)
						assert.Equal(t, v2, h.KEKVersion)
						assert.True(t, h.RowBound)
						// A fresh data key: the wrapped key differs, not just
						// the header.
						assert.NotEqual(t, before[id][len(before[id])-20:], v[len(v)-20:])
					}
				})
				t.Run("encrypt-existing", func(t *testing.T) {
					db := testsvc.Open(t, d)
					_, env := newKeys()
					col := testColumn("items", text)
					col.RowBound = true
					createTable(t, db, col.Table, text)
					seed(t, db, env, col, 500, func(id int64) string {
						switch id % 3 {
						case 0:
							return "pt"
						case 1:
							return "ct"
						}
						if id%7 == 0 {
							return "null"
						}
						return "pt"
					})
					before := values(t, db, col)
					var nulls, pts int64
					for _, v := range before {
						switch {
						case v == nil:
							nulls++
						case !envelope.IsCiphertext(v):
							pts++
						}
					}
					sum, err := Run(context.Background(), db, env, col, Options{Mode: EncryptExisting, BatchSize: 50, Workers: 3, ChunkSize: 120})
					require.NoError(t, err)
					assert.Equal(t, pts, sum.Changed)
					assert.Equal(t, nulls, sum.Nulls)
					assert.Equal(t, int64(500)-pts-nulls, sum.Current)
					for id, v := range values(t, db, col) {
						if before[id] == nil {
							assert.Nil(t, v)
							continue
						}
						if envelope.IsCiphertext(before[id]) {
							assert.Equal(t, before[id], v, "ciphertext row %d untouched", id)
						}
						pt, h := openValue(t, env, col, id, v)
						assert.Equal(t, plain(id), pt, "row %d", id)
						assert.True(t, h.RowBound)
					}
					// Running it again encrypts nothing twice.
					sum, err = Run(context.Background(), db, env, col, Options{Mode: EncryptExisting})
					require.NoError(t, err)
					assert.Zero(t, sum.Changed)
				})
			})
		}
	}
}

func TestFullDeterministic(t *testing.T) {
	testsvc.Each(t, func(t *testing.T, db *gorm.DB) {
		ctx := context.Background()
		keys, env := newKeys()
		col := testColumn("items", true)
		col.Deterministic = true
		createTable(t, db, col.Table, true)
		seed(t, db, env, col, 100, func(int64) string { return "pt" })
		_, err := Run(ctx, db, env, col, Options{Mode: EncryptExisting})
		require.NoError(t, err)
		// A primary rotation does not move deterministic values.
		keys.Rotate(scope)
		sum, err := Run(ctx, db, env, col, Options{})
		require.NoError(t, err)
		assert.Equal(t, int64(100), sum.Current)
		// A search-key rotation does, with Full.
		keys.RotateSearch(scope)
		sum, err = Run(ctx, db, env, col, Options{Mode: Full})
		require.NoError(t, err)
		assert.Equal(t, int64(100), sum.Changed)
		for id, v := range values(t, db, col) {
			pt, h := openValue(t, env, col, id, v)
			assert.Equal(t, plain(id), pt)
			assert.Equal(t, envelope.SuiteDeterministic, h.Suite)
			assert.Equal(t, uint32(2), h.KEKVersion)
			cand, err := env.DeterministicCandidates(ctx, envelope.Binding{Class: col.Class, Table: col.Table, Column: col.Column}, []byte(plain(id)))
			require.NoError(t, err)
			assert.Equal(t, string(cand[0]), mustDecode(t, v))
		}
	})
}

func mustDecode(t *testing.T, v []byte) string {
	b, err := envelope.DecodeText(string(v))
	require.NoError(t, err)
	return string(b)
}

func TestDryRunWritesNothing(t *testing.T) {
	testsvc.Each(t, func(t *testing.T, db *gorm.DB) {
		keys, env := newKeys()
		col := testColumn("items", false)
		createTable(t, db, col.Table, false)
		seed(t, db, env, col, 250, func(id int64) string {
			if id%5 == 0 {
				return "pt"
			}
			return "ct"
		})
		before := values(t, db, col)
		keys.Rotate(scope)
		for _, m := range []Mode{Rewrap, Full, EncryptExisting} {
			sum, err := Run(context.Background(), db, env, col, Options{Mode: m, DryRun: true, BatchSize: 40})
			require.NoError(t, err)
			assert.True(t, sum.DryRun)
			assert.Equal(t, int64(250), sum.Scanned)
			if m == EncryptExisting {
				assert.Equal(t, int64(50), sum.Changed)
			} else {
				assert.Equal(t, int64(200), sum.Changed, m.String())
			}
		}
		assert.Equal(t, before, values(t, db, col))
		assert.False(t, db.Migrator().HasTable(JobsTable), "dry run created the job tables")
	})
}

func TestResumeAfterCancel(t *testing.T) {
	testsvc.Each(t, func(t *testing.T, db *gorm.DB) {
		const n = 600
		keys, env := newKeys()
		col := testColumn("items", false)
		createTable(t, db, col.Table, false)
		seed(t, db, env, col, n, func(int64) string { return "ct" })
		v2 := keys.Rotate(scope)
		ctx, cancel := context.WithCancel(context.Background())
		opts := Options{JobID: "resume-test", BatchSize: 20, ChunkSize: 100, Workers: 2, RateLimit: 2000, LeaseTTL: 5 * time.Second}
		opts.Progress = func(p Progress) {
			if p.Scanned >= 150 {
				cancel()
			}
		}
		opts.ProgressEvery = 10 * time.Millisecond
		first, err := Run(ctx, db, env, col, opts)
		require.ErrorIs(t, err, context.Canceled)
		assert.False(t, first.JobFinished)
		assert.Greater(t, first.Changed, int64(0))
		assert.Less(t, first.Changed, int64(n))

		// The cancelled run released its leases: the rerun need not wait
		// for them to expire, so it takes none over.
		opts.Progress, opts.RateLimit = nil, 0
		second, err := Run(context.Background(), db, env, col, opts)
		require.NoError(t, err)
		assert.Zero(t, second.ChunksTakenOver, "a lease of the cancelled run was left to expire")
		assert.True(t, second.JobFinished)
		assert.Equal(t, int64(n), first.Changed+second.Changed, "every row rewrapped exactly once")
		assert.Zero(t, second.Current, "no batch was redone")
		for id, v := range values(t, db, col) {
			_, h := openValue(t, env, col, id, v)
			assert.Equal(t, v2, h.KEKVersion)
		}
		// An explicit job id stays finished.
		third, err := Run(context.Background(), db, env, col, opts)
		require.NoError(t, err)
		assert.True(t, third.JobFinished)
		assert.Zero(t, third.Scanned)
		// Same id, other column: refused.
		_, err = Run(context.Background(), db, env, col, Options{JobID: "resume-test", Mode: Full})
		require.ErrorIs(t, err, ErrJobMismatch)
	})
}

func TestCensus(t *testing.T) {
	testsvc.Each(t, func(t *testing.T, db *gorm.DB) {
		ctx := context.Background()
		keys, env := newKeys()
		col := testColumn("items", true)
		createTable(t, db, col.Table, true)
		seed(t, db, env, col, 100, func(id int64) string {
			switch {
			case id <= 10:
				return "null"
			case id <= 30:
				return "pt"
			}
			return "ct"
		})
		keys.Rotate(scope)
		seedMore := func(from, to int64) {
			for id := from; id <= to; id++ {
				ct, err := env.Seal(ctx, binding(col, id), []byte(plain(id)))
				require.NoError(t, err)
				require.NoError(t, db.Exec("UPDATE items SET val = ? WHERE id = ?", envelope.EncodeText(ct), id).Error)
			}
		}
		seedMore(91, 100) // 10 rows on v2
		require.NoError(t, db.Exec("UPDATE items SET val = ? WHERE id = 31", "fc1:!!notbase64").Error)
		// Row 32: a valid header, a body that does not authenticate.
		v := values(t, db, col)[32]
		raw, err := envelope.DecodeText(string(v))
		require.NoError(t, err)
		raw[len(raw)-1] ^= 1
		require.NoError(t, db.Exec("UPDATE items SET val = ? WHERE id = 32", envelope.EncodeText(raw)).Error)

		res, err := Census(ctx, db, nil, col, CensusOptions{BatchSize: 7})
		require.NoError(t, err)
		assert.Equal(t, int64(100), res.Rows)
		assert.Equal(t, int64(10), res.Nulls)
		assert.Equal(t, int64(20), res.Plaintext)
		assert.Equal(t, int64(1), res.Malformed)
		assert.Equal(t, []KeyCount{
			{Class: envelope.High, Suite: envelope.SuiteRandomizedDerivedWrap, KEKVersion: 1, Count: 59},
			{Class: envelope.High, Suite: envelope.SuiteRandomizedDerivedWrap, KEKVersion: 2, Count: 10},
		}, res.Keys)
		assert.Zero(t, res.Undecryptable)

		res, err = Census(ctx, db, env, col, CensusOptions{})
		require.NoError(t, err)
		assert.Equal(t, int64(1), res.Undecryptable)
		require.Len(t, res.Failures, 2)
		assert.Equal(t, "31", res.Failures[0].Row)
		assert.ErrorIs(t, res.Failures[0].Err, ErrMalformedValue)
		assert.Equal(t, "32", res.Failures[1].Row)
		assert.ErrorIs(t, res.Failures[1].Err, envelope.ErrAuthentication)
	})
}

func TestFailingRowDoesNotStopJob(t *testing.T) {
	testsvc.Each(t, func(t *testing.T, db *gorm.DB) {
		ctx := context.Background()
		for _, m := range []Mode{Rewrap, Full} {
			t.Run(m.String(), func(t *testing.T) {
				keys, env := newKeys()
				col := testColumn("items_"+strings.ReplaceAll(m.String(), "-", "_"), false)
				createTable(t, db, col.Table, false)
				seed(t, db, env, col, 200, func(int64) string { return "ct" })
				// Row 77: sealed by a foreign key source, so its data key
				// does not unwrap (Rewrap) and it does not open (Full).
				_, foreign := newKeys()
				bad, err := foreign.Seal(ctx, binding(col, 77), []byte("TOPSECRET-PLAINTEXT"))
				require.NoError(t, err)
				require.NoError(t, db.Exec("UPDATE "+col.Table+" SET val = ? WHERE id = 77", bad).Error)
				v2 := keys.Rotate(scope)
				sum, err := Run(ctx, db, env, col, Options{Mode: m, BatchSize: 30})
				require.ErrorIs(t, err, ErrRowsFailed)
				assert.True(t, sum.JobFinished)
				assert.Equal(t, int64(1), sum.Failed)
				assert.Equal(t, int64(199), sum.Changed)
				require.Len(t, sum.Failures, 1)
				assert.Equal(t, "77", sum.Failures[0].Row)
				assert.ErrorIs(t, sum.Failures[0].Err, envelope.ErrAuthentication)
				assert.Contains(t, err.Error(), "77")
				assert.NotContains(t, err.Error(), "TOPSECRET")
				assert.NotContains(t, sum.Failures[0].Error(), "TOPSECRET")
				for id, v := range values(t, db, col) {
					if id == 77 {
						assert.Equal(t, bad, v)
						continue
					}
					_, h := openValue(t, env, col, id, v)
					assert.Equal(t, v2, h.KEKVersion)
				}
			})
		}
	})
}

// TestConflictRetried swaps against a stale old value: the row is re-read
// and swapped again, the concurrent write is kept.
func TestConflictRetried(t *testing.T) {
	testsvc.Each(t, func(t *testing.T, db *gorm.DB) {
		ctx := context.Background()
		keys, env := newKeys()
		col := testColumn("items", false)
		createTable(t, db, col.Table, false)
		seed(t, db, env, col, 3, func(int64) string { return "ct" })
		keys.Rotate(scope)
		opts := Options{}
		require.NoError(t, opts.defaults(col))
		r, err := newRunner(ctx, db, env, col, opts)
		require.NoError(t, err)
		rows, err := r.readBatch(ctx, r.db, nil, nil, 10)
		require.NoError(t, err)
		// The application writes row 2 after we read it.
		fresh, err := env.Seal(ctx, binding(col, 2), []byte("written-concurrently"))
		require.NoError(t, err)
		require.NoError(t, db.Exec("UPDATE items SET val = ? WHERE id = 2", fresh).Error)
		d := &counts{}
		ups, err := r.prepare(ctx, rows, d)
		require.NoError(t, err)
		require.Len(t, ups, 3)
		tx, err := r.db.BeginTx(ctx, nil)
		require.NoError(t, err)
		defer func() { _ = tx.Rollback() }()
		require.NoError(t, r.swap(ctx, tx, ups, d))
		require.NoError(t, tx.Commit())
		assert.Equal(t, int64(1), d.conflicts)
		assert.Equal(t, int64(2), d.changed)
		assert.Equal(t, int64(1), d.current, "the concurrent write is already on the primary")
		v := values(t, db, col)
		pt, h := openValue(t, env, col, 2, v[2])
		assert.Equal(t, "written-concurrently", pt)
		assert.Equal(t, uint32(2), h.KEKVersion)
	})
}

// TestConcurrentRuns: two processes (separate pools) share one job.
func TestConcurrentRuns(t *testing.T) {
	for _, d := range []testsvc.Dialect{testsvc.Postgres, testsvc.MySQL} {
		t.Run(string(d), func(t *testing.T) {
			const n = 3000
			db1, dsn := openDB(t, d)
			db2 := secondPool(t, dsn)
			keys, env := newKeys()
			col := testColumn("items", false)
			createTable(t, db1, col.Table, false)
			seed(t, db1, env, col, n, func(int64) string { return "ct" })
			v2 := keys.Rotate(scope)
			opts := Options{JobID: "shared", BatchSize: 50, ChunkSize: 200, Workers: 2}
			var (
				wg   sync.WaitGroup
				sums [2]Summary
				errs [2]error
			)
			for i, db := range []*gorm.DB{db1, db2} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					o := opts
					o.Owner = []string{"host-a", "host-b"}[i]
					sums[i], errs[i] = Run(context.Background(), db, env, col, o)
				}()
			}
			wg.Wait()
			require.NoError(t, errs[0])
			require.NoError(t, errs[1])
			t.Logf("host-a: %d chunks, %d rows; host-b: %d chunks, %d rows", sums[0].ChunksDone, sums[0].Scanned, sums[1].ChunksDone, sums[1].Scanned)
			assert.True(t, sums[0].JobFinished && sums[1].JobFinished)
			assert.Equal(t, int64(n), sums[0].Changed+sums[1].Changed, "each row rewrapped once")
			assert.Equal(t, int64(n), sums[0].Scanned+sums[1].Scanned, "no row read twice")
			assert.Equal(t, 16, sums[0].ChunksDone+sums[1].ChunksDone)
			assert.Positive(t, sums[0].ChunksDone)
			assert.Positive(t, sums[1].ChunksDone)
			for id, v := range values(t, db1, col) {
				_, h := openValue(t, env, col, id, v)
				assert.Equal(t, v2, h.KEKVersion)
			}
		})
	}
}

// TestExpiredLeaseTakenOver: a chunk leased by a dead process is taken
// over when the lease expires, resuming from its checkpoint.
func TestExpiredLeaseTakenOver(t *testing.T) {
	testsvc.Each(t, func(t *testing.T, db *gorm.DB) {
		ctx := context.Background()
		keys, env := newKeys()
		col := testColumn("items", false)
		createTable(t, db, col.Table, false)
		seed(t, db, env, col, 400, func(int64) string { return "ct" })
		v2 := keys.Rotate(scope)
		m := telemetrytest.New(t)
		opts := Options{JobID: "takeover", BatchSize: 25, ChunkSize: 100, LeaseTTL: 1500 * time.Millisecond, MeterProvider: m}
		r := planJob(t, db, env, col, opts)
		// A dead process holds chunk 1 (ids 101..200): it had done up to
		// id 150 (checkpointed) and its lease runs another second.
		require.NoError(t, db.Exec("UPDATE "+ChunksTable+" SET owner = 'dead-host', lease_gen = 1, last_pk = '150', lease_until = ? WHERE job_id = 'takeover' AND chunk_no = 1",
			r.nowMS()+1000).Error)

		start := time.Now()
		opts.Owner = "survivor"
		sum, err := Run(ctx, db, env, col, opts)
		require.NoError(t, err)
		assert.GreaterOrEqual(t, time.Since(start), 900*time.Millisecond, "waited for the lease to expire")
		assert.Equal(t, 1, sum.ChunksTakenOver)
		assert.True(t, sum.JobFinished)
		assert.Equal(t, int64(350), sum.Changed, "rows 101..150 were the dead owner's, behind its checkpoint")
		assert.Equal(t, int64(1), m.Sum(t, "fieldcrypt.reencrypt.lease.takeovers", map[string]string{"mode": "rewrap"}))
		assert.Equal(t, int64(350), m.Sum(t, "fieldcrypt.reencrypt.rows", map[string]string{"mode": "rewrap", "outcome": "changed"}))
		assert.Equal(t, int64(sum.ChunksDone), m.Sum(t, "fieldcrypt.reencrypt.chunks", map[string]string{"outcome": "done"}))
		for id, v := range values(t, db, col) {
			_, h := openValue(t, env, col, id, v)
			if id >= 101 && id <= 150 {
				assert.Equal(t, uint32(1), h.KEKVersion)
			} else {
				assert.Equal(t, v2, h.KEKVersion)
			}
		}
		var takeovers int
		require.NoError(t, db.Raw("SELECT takeovers FROM "+ChunksTable+" WHERE job_id = 'takeover' AND chunk_no = 1").Scan(&takeovers).Error)
		assert.Equal(t, 1, takeovers)
	})
}

// TestUUIDPrimaryKey: text/UUID keys page, chunk and bind like integers.
func TestUUIDPrimaryKey(t *testing.T) {
	testsvc.Each(t, func(t *testing.T, db *gorm.DB) {
		ctx := context.Background()
		keys, env := newKeys()
		typ, blob := "CHAR(36)", "BLOB"
		if dialectName(db) == "postgres" {
			typ, blob = "UUID", "BYTEA"
		}
		require.NoError(t, db.Exec("CREATE TABLE docs (id "+typ+" NOT NULL PRIMARY KEY, body "+blob+")").Error)
		col := Column{Table: "docs", PK: "id", Column: "body", Class: envelope.High, RowBound: true}
		ids := map[string]string{}
		for i := range 150 {
			var u [16]byte
			_, _ = rand.Read(u[:])
			id := RowKey(u)
			ids[id] = fmt.Sprintf("doc-%d", i)
			require.NoError(t, db.Exec("INSERT INTO docs (id, body) VALUES (?, ?)", id, []byte(ids[id])).Error)
		}
		_, err := Run(ctx, db, env, col, Options{Mode: EncryptExisting, BatchSize: 16, ChunkSize: 40, Workers: 2})
		require.NoError(t, err)
		v2 := keys.Rotate(scope)
		sum, err := Run(ctx, db, env, col, Options{Mode: Full, BatchSize: 16, ChunkSize: 40, Workers: 2})
		require.NoError(t, err)
		assert.Equal(t, int64(150), sum.Changed)
		rows, err := db.Raw("SELECT id, body FROM docs").Rows()
		require.NoError(t, err)
		defer rows.Close()
		n := 0
		for rows.Next() {
			var id string
			var body []byte
			require.NoError(t, rows.Scan(&id, &body))
			h, err := envelope.Inspect(body)
			require.NoError(t, err)
			assert.Equal(t, v2, h.KEKVersion)
			assert.True(t, h.RowBound)
			pt, err := env.Open(ctx, envelope.Binding{Class: envelope.High, Table: "docs", Column: "body", Row: id}, body)
			require.NoError(t, err, "row %s", id)
			assert.Equal(t, ids[id], string(pt))
			n++
		}
		assert.Equal(t, 150, n)
	})
}

// TestTenantColumn: each row's tenant selects its KEK scope.
func TestTenantColumn(t *testing.T) {
	testsvc.Each(t, func(t *testing.T, db *gorm.DB) {
		ctx := context.Background()
		keys, env := newKeys()
		col := testColumn("items", false)
		col.TenantColumn = "tenant"
		createTable(t, db, col.Table, false)
		tenants := []string{"acme", "globex"}
		for id := int64(1); id <= 60; id++ {
			ten := tenants[id%2]
			b := binding(col, id)
			b.Tenant = ten
			ct, err := env.Seal(ctx, b, []byte(plain(id)))
			require.NoError(t, err)
			require.NoError(t, db.Exec("INSERT INTO items (id, val, tenant) VALUES (?, ?, ?)", id, ct, ten).Error)
		}
		keys.Rotate(envelope.Scope{Class: envelope.High, Tenant: "acme"})
		sum, err := Run(ctx, db, env, col, Options{BatchSize: 7})
		require.NoError(t, err)
		assert.Equal(t, int64(30), sum.Changed)
		assert.Equal(t, int64(30), sum.Current)
		res, err := Census(ctx, db, env, col, CensusOptions{})
		require.NoError(t, err)
		assert.Equal(t, []KeyCount{
			{Tenant: "acme", Class: envelope.High, Suite: envelope.SuiteRandomizedDerivedWrap, KEKVersion: 2, Count: 30},
			{Tenant: "globex", Class: envelope.High, Suite: envelope.SuiteRandomizedDerivedWrap, KEKVersion: 1, Count: 30},
		}, res.Keys)
		assert.Zero(t, res.Undecryptable)
	})
}

func TestModeAndSummaryJSON(t *testing.T) {
	for _, m := range []Mode{Rewrap, Full, EncryptExisting} {
		got, err := ParseMode(m.String())
		require.NoError(t, err)
		assert.Equal(t, m, got)
	}
	_, err := ParseMode("rotate")
	require.ErrorIs(t, err, ErrInvalidOptions)

	s := Summary{JobID: "j", Mode: Full, Failed: 1, Failures: []RowFailure{{Row: "7", Err: fmt.Errorf("%w: x", envelope.ErrAuthentication)}}}
	b, err := json.Marshal(s)
	require.NoError(t, err)
	assert.Contains(t, string(b), `"Mode":"full"`)
	assert.Contains(t, string(b), `"Failures":[{"row":"7","error":"fieldcrypt: authentication failed: x"}]`)
	var back Summary
	require.NoError(t, json.Unmarshal(b, &back))
	assert.Equal(t, Full, back.Mode)
	assert.Equal(t, "7", back.Failures[0].Row)
}
