package reencrypt

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/fieldcrypt/fieldcrypt/envelope"
	"github.com/fieldcrypt/fieldcrypt/internal/testsvc"
)

// BenchmarkEncryptExistingBlindIndex compares a migration (EncryptExisting)
// of a plaintext column with and without writing its blind index in the
// same compare-and-swap, on each database. Rows: MIGRATE_BENCH_ROWS
// (default 20000). Each iteration re-seeds the plaintext table (not
// timed), migrates it without the index, re-seeds, and migrates it with
// the index; both tables have the index column, so the only difference is
// computing and writing the index.
//
//	MIGRATE_BENCH_ROWS=20000 CI=true go test ./reencrypt -run '^$' -bench EncryptExistingBlindIndex -benchtime 3x
func BenchmarkEncryptExistingBlindIndex(b *testing.B) {
	rows := benchRows(b, "MIGRATE_BENCH_ROWS", 20000)
	ctx := context.Background()
	for _, d := range testsvc.Dialects() {
		b.Run(string(d), func(b *testing.B) {
			db := testsvc.Open(b, d)
			_, env := newKeys()
			col := testColumn("items", true)
			reseed := func() {
				require.NoError(b, db.Exec("DROP TABLE IF EXISTS items").Error)
				createTable(b, db, col.Table, true)
				require.NoError(b, db.Exec("ALTER TABLE items ADD val_bidx VARCHAR(64) NULL").Error)
				require.NoError(b, db.Exec("CREATE INDEX items_val_bidx ON items (val_bidx)").Error)
				seedPlain(b, db, rows)
			}
			run := func(indexed bool) time.Duration {
				reseed()
				c := col
				if indexed {
					c.BlindIndexes = []BlindIndex{{Column: "val_bidx", Spec: envelope.BlindIndex{Size: 16}}}
				}
				t0 := time.Now()
				sum, err := Run(ctx, db, env, c, Options{Mode: EncryptExisting})
				el := time.Since(t0)
				require.NoError(b, err)
				require.Equal(b, int64(rows), sum.Changed)
				return el
			}
			var plainT, idxT time.Duration
			for i := 0; i < b.N; i++ {
				plainT += run(false)
				idxT += run(true)
			}
			n := float64(rows) * float64(b.N)
			b.ReportMetric(n/plainT.Seconds(), "noindex-rows/s")
			b.ReportMetric(n/idxT.Seconds(), "index-rows/s")
			b.ReportMetric(idxT.Seconds()/plainT.Seconds(), "ratio")
		})
	}
}

// seedPlain inserts rows 1..n with plaintext values.
func seedPlain(b *testing.B, db *gorm.DB, n int) {
	b.Helper()
	for start := 1; start <= n; start += 500 {
		var ph []string
		var args []any
		for id := start; id < start+500 && id <= n; id++ {
			ph = append(ph, "(?, ?)")
			args = append(args, id, plain(int64(id)))
		}
		require.NoError(b, db.Exec("INSERT INTO items (id, val) VALUES "+strings.Join(ph, ","), args...).Error)
	}
}
