package reencrypt

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/stretchr/testify/require"

	"github.com/fieldcrypt/fieldcrypt/internal/testsvc"
)

// BenchmarkRewrapPostgres compares a rewrap of every row of a one-column
// table with a crypto-free rewrite of the same column through the same
// machinery (same chunks, batches, compare-and-swap statements and
// checkpoints), for 1, 2 and 4 workers. Rows: REENCRYPT_BENCH_ROWS
// (default 100000). Each iteration rotates the KEK and rewraps every row.
//
//	REENCRYPT_BENCH_ROWS=1000000 go test ./reencrypt -run '^$' -bench RewrapPostgres -benchtime 1x -timeout 60m
func BenchmarkRewrapPostgres(b *testing.B) {
	rows := benchRows(b, "REENCRYPT_BENCH_ROWS", 100000)
	ctx := context.Background()
	db := testsvc.Open(b, testsvc.Postgres)
	keys, env := newKeys()
	col := testColumn("items", false)
	createTable(b, db, col.Table, false)

	// Seed with COPY: every row gets its own sealed value.
	start := time.Now()
	sqlDB, err := db.DB()
	require.NoError(b, err)
	conn, err := sqlDB.Conn(ctx)
	require.NoError(b, err)
	src := make([][]any, rows)
	for i := range src {
		id := int64(i + 1)
		ct, err := env.Seal(ctx, binding(col, id), []byte(plain(id)))
		require.NoError(b, err)
		src[i] = []any{id, ct}
	}
	require.NoError(b, conn.Raw(func(dc any) error {
		_, err := dc.(*stdlib.Conn).Conn().CopyFrom(ctx, pgx.Identifier{col.Table}, []string{"id", "val"}, pgx.CopyFromRows(src))
		return err
	}))
	_ = conn.Close()
	src = nil
	require.NoError(b, db.Exec("VACUUM ANALYZE items").Error)
	b.Logf("seeded %d rows in %v", rows, time.Since(start))

	flip := func(v []byte) []byte {
		out := append([]byte(nil), v...)
		out[len(out)-1] ^= 0x01
		return out
	}
	// Each iteration runs the crypto-free rewrite and then the rewrap, so
	// both see the same table, WAL and neighbour load.
	run := func(b *testing.B, workers int, rewrap bool) time.Duration {
		b.Helper()
		require.NoError(b, db.Exec("VACUUM items").Error)
		opts := Options{Workers: workers}
		if rewrap {
			keys.Rotate(scope)
		} else {
			opts.transform = flip
		}
		t0 := time.Now()
		sum, err := Run(ctx, db, env, col, opts)
		el := time.Since(t0)
		require.NoError(b, err)
		require.Equal(b, int64(rows), sum.Changed)
		return el
	}
	for _, workers := range []int{1, 2, 4} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) {
			var plainT, rewrapT time.Duration
			for i := 0; i < b.N; i++ {
				plainT += run(b, workers, false)
				rewrapT += run(b, workers, true)
			}
			n := float64(rows) * float64(b.N)
			b.ReportMetric(n/plainT.Seconds(), "plain-rows/s")
			b.ReportMetric(n/rewrapT.Seconds(), "rewrap-rows/s")
			b.ReportMetric(rewrapT.Seconds()/plainT.Seconds(), "ratio")
			b.Logf("workers=%d: plain %.2fs/run, rewrap %.2fs/run", workers, plainT.Seconds()/float64(b.N), rewrapT.Seconds()/float64(b.N))
		})
	}
}

// benchRows is the row count a benchmark takes from the environment
// variable name, def when it is unset.
func benchRows(b *testing.B, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	require.NoError(b, err, name)
	return n
}
