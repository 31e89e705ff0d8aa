package audit_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fieldcrypt/fieldcrypt/audit"
	"github.com/fieldcrypt/fieldcrypt/internal/testsvc"
)

// TestGormCheckpoints keeps the latest checkpoint of each log in a table,
// on SQLite, PostgreSQL and MariaDB, and Verify holds the log to it.
func TestGormCheckpoints(t *testing.T) {
	ctx := context.Background()
	for _, d := range testsvc.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			store, err := audit.NewGormCheckpoints(ctx, testsvc.Open(t, d))
			require.NoError(t, err)
			e := newChainEnv(t)
			withStore := func(o *audit.ChainOptions) { o.Checkpoints = store }
			e.write(5, withStore)
			e.write(3, withStore) // a second writer moves the checkpoint on
			cps, err := store.Checkpoints(ctx)
			require.NoError(t, err)
			require.Len(t, cps, 1, "one row per log")
			assert.Equal(t, uint64(9), cps[0].Seq)

			files := e.files()
			vo := audit.VerifyOptions{MasterKeys: []string{e.mk.URI()}, Checkpoints: cps}
			res, err := audit.Verify(ctx, files, vo)
			require.NoError(t, err)
			assert.Equal(t, uint64(9), res.Logs[0].Checkpoint.Seq)

			ls := lines(t, e.log)
			writeLines(t, e.log, ls[:len(ls)-2])
			_, err = audit.Verify(ctx, files, vo)
			require.ErrorIs(t, err, audit.ErrTruncated)
		})
	}
}
