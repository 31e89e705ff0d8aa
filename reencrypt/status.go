package reencrypt

import (
	"context"
	"database/sql"
	"fmt"
	"sort"
	"time"

	"gorm.io/gorm"

	"github.com/fieldcrypt/fieldcrypt/internal/dbsql"
)

// JobStatus is the state of a job as its tables record it: what every
// process sharing it has done, not one process's view.
type JobStatus struct {
	JobID         string         `json:"job_id"`
	Table         string         `json:"table"`
	Column        string         `json:"column"`
	Mode          string         `json:"mode"`
	TotalRows     int64          `json:"total_rows"` // rows when the job was planned
	RowsDone      int64          `json:"rows_done"`
	Changed       int64          `json:"changed"`
	Failed        int64          `json:"failed"`
	Chunks        int            `json:"chunks"`
	ChunksDone    int            `json:"chunks_done"`
	ChunksLeased  int            `json:"chunks_leased"`  // held by a worker whose lease runs
	ChunksPending int            `json:"chunks_pending"` // free, or whose lease expired
	Workers       []WorkerStatus `json:"workers"`        // workers holding a chunk now
	Created       time.Time      `json:"created"`
	Finished      *time.Time     `json:"finished,omitempty"`
	RowsPerS      float64        `json:"rows_per_s"`      // since the job was planned
	ETAS          float64        `json:"eta_s,omitempty"` // seconds, from RowsPerS; 0 when unknown
}

// WorkerStatus is a worker (a Run's Owner) that holds chunks of a job.
type WorkerStatus struct {
	Owner         string    `json:"owner"`
	Chunks        int       `json:"chunks"`
	LastHeartbeat time.Time `json:"last_heartbeat"`
	LeaseUntil    time.Time `json:"lease_until"`
	// Stopped: no heartbeat for two of its heartbeat periods (a killed
	// process); its chunks are taken over when the lease expires.
	Stopped bool `json:"stopped"`
}

// Status returns the state of job jobID, or of every job when jobID is
// "" (newest first). A database without job tables has no jobs.
func Status(ctx context.Context, db *gorm.DB, jobID string) ([]JobStatus, error) {
	sqlDB, d, now, err := jobTables(ctx, db)
	if sqlDB == nil || err != nil {
		return nil, err
	}
	s := &dbsql.Buf{D: d}
	s.W("SELECT job_id, table_name, column_name, mode, total_rows, chunks, created_ms, finished_ms FROM ", JobsTable)
	if jobID != "" {
		s.W(" WHERE job_id = ").P(jobID)
	}
	s.W(" ORDER BY created_ms DESC, job_id")
	rows, err := sqlDB.QueryContext(ctx, s.String(), s.Args...)
	if err != nil {
		return nil, fmt.Errorf("reencrypt: reading jobs: %w", err)
	}
	var out []JobStatus
	for rows.Next() {
		var j JobStatus
		var created int64
		var fin sql.NullInt64
		if err := rows.Scan(&j.JobID, &j.Table, &j.Column, &j.Mode, &j.TotalRows, &j.Chunks, &created, &fin); err != nil {
			rows.Close()
			return nil, err
		}
		j.Created = time.UnixMilli(created).UTC()
		if fin.Valid {
			t := time.UnixMilli(fin.Int64).UTC()
			j.Finished = &t
		}
		j.Workers = []WorkerStatus{}
		out = append(out, j)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if jobID != "" && len(out) == 0 {
		return nil, fmt.Errorf("%w: no job %q", ErrNoJob, jobID)
	}
	for i := range out {
		if err := chunkStatus(ctx, sqlDB, d, now, &out[i]); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// ErrNoJob means the job named does not exist (or was pruned).
var ErrNoJob = fmt.Errorf("%w: no such job", ErrInvalidOptions)

func chunkStatus(ctx context.Context, db *sql.DB, d dbsql.Dialect, now int64, j *JobStatus) error {
	s := &dbsql.Buf{D: d}
	s.W("SELECT done, owner, lease_until, updated_ms, rows_done, changed, failed FROM ", ChunksTable, " WHERE job_id = ").P(j.JobID)
	rows, err := db.QueryContext(ctx, s.String(), s.Args...)
	if err != nil {
		return fmt.Errorf("reencrypt: reading chunks of %s: %w", j.JobID, err)
	}
	defer rows.Close()
	workers := map[string]*WorkerStatus{}
	last := int64(0)
	for rows.Next() {
		var done int
		var owner sql.NullString
		var until, updated, rowsDone, changed, failed int64
		if err := rows.Scan(&done, &owner, &until, &updated, &rowsDone, &changed, &failed); err != nil {
			return err
		}
		j.RowsDone += rowsDone
		j.Changed += changed
		j.Failed += failed
		last = max(last, updated)
		switch {
		case done != 0:
			j.ChunksDone++
		case owner.Valid && until >= now:
			j.ChunksLeased++
			w := workers[owner.String]
			if w == nil {
				w = &WorkerStatus{Owner: owner.String}
				workers[owner.String] = w
			}
			w.Chunks++
			if hb := time.UnixMilli(updated).UTC(); hb.After(w.LastHeartbeat) {
				w.LastHeartbeat = hb
			}
			if lu := time.UnixMilli(until).UTC(); lu.After(w.LeaseUntil) {
				w.LeaseUntil = lu
			}
			w.Stopped = stalled(now, updated, until)
		default:
			j.ChunksPending++
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	for _, w := range workers {
		j.Workers = append(j.Workers, *w)
	}
	sort.Slice(j.Workers, func(a, b int) bool { return j.Workers[a].Owner < j.Workers[b].Owner })
	end := now
	if j.Finished != nil {
		end = j.Finished.UnixMilli()
	} else if last > 0 && j.ChunksLeased == 0 {
		end = last // nobody works on it now
	}
	if el := float64(end-j.Created.UnixMilli()) / 1000; el > 0 && j.RowsDone > 0 {
		j.RowsPerS = float64(int64(float64(j.RowsDone)/el*100+0.5)) / 100
		if j.Finished == nil && j.TotalRows > j.RowsDone {
			j.ETAS = float64(int64(float64(j.TotalRows-j.RowsDone)/j.RowsPerS*100+0.5)) / 100
		}
	}
	return nil
}

// stalled reports a lease whose holder stopped renewing it: heartbeats set
// updated_ms to now and lease_until to now+LeaseTTL every LeaseTTL/3, so
// two periods without one mean the worker is gone (or cut off).
func stalled(now, updated, until int64) bool {
	return (now-updated)*3 > (until-updated)*2
}

// Prune deletes finished jobs (their job and chunk rows) that finished more
// than olderThan ago, or only job jobID when it is not "" (finished or
// not: pruning a running job makes its workers stop with a lost lease). It
// returns the ids pruned. Job rows hold key values of the processed table
// (chunk bounds), never column values; pruning loses only the history.
func Prune(ctx context.Context, db *gorm.DB, olderThan time.Duration, jobID string) ([]string, error) {
	sqlDB, d, now, err := jobTables(ctx, db)
	if sqlDB == nil || err != nil {
		return nil, err
	}
	cutoff := now - olderThan.Milliseconds()
	s := &dbsql.Buf{D: d}
	s.W("SELECT job_id FROM ", JobsTable, " WHERE ")
	if jobID != "" {
		s.W("job_id = ").P(jobID)
	} else {
		s.W("finished_ms IS NOT NULL AND finished_ms <= ").P(cutoff)
	}
	rows, err := sqlDB.QueryContext(ctx, s.String(), s.Args...)
	if err != nil {
		return nil, fmt.Errorf("reencrypt: reading jobs: %w", err)
	}
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return nil, err
		}
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if jobID != "" && len(ids) == 0 {
		return nil, fmt.Errorf("%w: no job %q", ErrNoJob, jobID)
	}
	for _, id := range ids {
		tx, err := sqlDB.BeginTx(ctx, nil)
		if err != nil {
			return nil, err
		}
		for _, table := range []string{ChunksTable, JobsTable} {
			s := &dbsql.Buf{D: d}
			s.W("DELETE FROM ", table, " WHERE job_id = ").P(id)
			if _, err := tx.ExecContext(ctx, s.String(), s.Args...); err != nil {
				_ = tx.Rollback()
				return nil, fmt.Errorf("reencrypt: pruning job %s: %w", id, err)
			}
		}
		if err := tx.Commit(); err != nil {
			return nil, fmt.Errorf("reencrypt: pruning job %s: %w", id, err)
		}
	}
	return ids, nil
}

// jobTables returns the connection pool, the dialect and the database's
// clock (Unix ms); a nil pool when there are no job tables.
func jobTables(ctx context.Context, db *gorm.DB) (*sql.DB, dbsql.Dialect, int64, error) {
	d, err := dbsql.Of(db)
	if err != nil {
		return nil, 0, 0, fmt.Errorf("%w: %w", ErrInvalidOptions, err)
	}
	if !db.WithContext(ctx).Migrator().HasTable(JobsTable) {
		return nil, d, 0, nil
	}
	sqlDB, err := db.DB()
	if err != nil {
		return nil, d, 0, err
	}
	return sqlDB, d, time.Now().Add(clockOffset(ctx, sqlDB, d)).UnixMilli(), nil
}

// clockOffset is the database clock minus the local clock (leases compare
// the same on every host); 0 on SQLite, which is local.
func clockOffset(ctx context.Context, db *sql.DB, d dbsql.Dialect) time.Duration {
	var ms int64
	var err error
	switch d {
	case dbsql.Postgres:
		err = db.QueryRowContext(ctx, `SELECT (extract(epoch from clock_timestamp()) * 1000)::bigint`).Scan(&ms)
	case dbsql.MySQL:
		err = db.QueryRowContext(ctx, `SELECT CAST(UNIX_TIMESTAMP(NOW(3)) * 1000 AS SIGNED)`).Scan(&ms)
	default:
		return 0
	}
	if err != nil || ms == 0 {
		return 0
	}
	return time.Until(time.UnixMilli(ms))
}
