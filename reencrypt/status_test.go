package reencrypt

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/fieldcrypt/fieldcrypt/internal/testsvc"
)

// TestStalledWorkerExplained (issue 12): after a worker is killed, the
// survivors' progress says what they wait for and when it is taken over;
// Status shows every job, its chunks and workers; Prune removes finished
// jobs.
func TestStalledWorkerExplained(t *testing.T) {
	testsvc.Each(t, func(t *testing.T, db *gorm.DB) {
		ctx := context.Background()
		keys, env := newKeys()
		col := testColumn("items", false)
		createTable(t, db, col.Table, false)
		seed(t, db, env, col, 400, func(int64) string { return "ct" })
		keys.Rotate(scope)
		opts := Options{JobID: "killed", BatchSize: 25, ChunkSize: 100, LeaseTTL: 1500 * time.Millisecond, ProgressEvery: 50 * time.Millisecond}
		r := planJob(t, db, env, col, opts)
		// kill -9: the worker holding chunk 1 stopped heartbeating 10 s
		// ago; its lease runs another 1.2 s.
		now := r.nowMS()
		require.NoError(t, db.Exec("UPDATE "+ChunksTable+" SET owner = 'killed-host:42', lease_gen = 1, lease_until = ?, updated_ms = ? WHERE job_id = 'killed' AND chunk_no = 1",
			now+1200, now-10000).Error)

		st, err := Status(ctx, db, "killed")
		require.NoError(t, err)
		require.Len(t, st, 1)
		assert.Equal(t, 1, st[0].ChunksLeased)
		assert.Equal(t, 4, st[0].ChunksPending, "5 chunks: the last, open-ended, catches rows inserted meanwhile")
		require.Len(t, st[0].Workers, 1)
		assert.Equal(t, "killed-host:42", st[0].Workers[0].Owner)
		assert.True(t, st[0].Workers[0].Stopped)

		var mu sync.Mutex
		var waits []string
		opts.Owner = "survivor"
		opts.Progress = func(p Progress) {
			if w := p.WaitingFor(); w != "" {
				mu.Lock()
				waits = append(waits, w)
				mu.Unlock()
			}
		}
		sum, err := Run(ctx, db, env, col, opts)
		require.NoError(t, err)
		assert.True(t, sum.JobFinished)
		mu.Lock()
		require.NotEmpty(t, waits, "the wait was explained")
		assert.True(t, strings.HasPrefix(waits[0], "waiting for 1 chunk leased by a stopped worker, taken over in "), waits[0])
		mu.Unlock()

		st, err = Status(ctx, db, "")
		require.NoError(t, err)
		require.Len(t, st, 1)
		assert.Equal(t, 5, st[0].ChunksDone)
		assert.NotNil(t, st[0].Finished)
		assert.Equal(t, int64(400), st[0].RowsDone)
		assert.Empty(t, st[0].Workers)

		pruned, err := Prune(ctx, db, time.Hour, "")
		require.NoError(t, err)
		assert.Empty(t, pruned, "finished less than an hour ago: kept")
		pruned, err = Prune(ctx, db, 0, "")
		require.NoError(t, err)
		assert.Equal(t, []string{"killed"}, pruned)
		st, err = Status(ctx, db, "")
		require.NoError(t, err)
		assert.Empty(t, st)
		_, err = Status(ctx, db, "killed")
		assert.ErrorIs(t, err, ErrNoJob)
	})
}

func TestWaitingFor(t *testing.T) {
	assert.Empty(t, Progress{}.WaitingFor())
	assert.Equal(t, "waiting for 2 chunks leased by other workers to finish", Progress{Waiting: 2}.WaitingFor())
	assert.Equal(t, "waiting for 2 chunks leased by a stopped worker, taken over in 24 s", Progress{Waiting: 2, Stalled: 2, TakeoverIn: 23500 * time.Millisecond}.WaitingFor())
	assert.Equal(t, "waiting for 1 chunk leased by a stopped worker, taken over in 1 s (and 1 chunk leased by other workers)", Progress{Waiting: 2, Stalled: 1, TakeoverIn: time.Second}.WaitingFor())
}
