package reencrypt

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fieldcrypt/fieldcrypt/internal/testsvc"
)

// TestCallersPoolLeftAlone: Run and Census use the caller's connection
// pool as it is; they never raise its idle limit.
func TestCallersPoolLeftAlone(t *testing.T) {
	for _, d := range testsvc.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			db := testsvc.Open(t, d)
			sqlDB, err := db.DB()
			require.NoError(t, err)
			sqlDB.SetMaxIdleConns(1)
			keys, env := newKeys()
			col := testColumn("items", false)
			createTable(t, db, col.Table, false)
			seed(t, db, env, col, 200, func(int64) string { return "ct" })
			keys.Rotate(scope)
			_, err = Run(context.Background(), db, env, col, Options{Workers: 4, BatchSize: 10, ChunkSize: 20})
			require.NoError(t, err)
			_, err = Census(context.Background(), db, env, col, CensusOptions{})
			require.NoError(t, err)
			assert.LessOrEqual(t, sqlDB.Stats().Idle, 1, "the pool keeps at most the idle connections its owner allowed")
			assert.Equal(t, 10, PoolSize(4))
		})
	}
}
