package reencrypt

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"gorm.io/gorm"

	"github.com/fieldcrypt/fieldcrypt/internal/dbsql"
)

// Names of the tables that hold job state.
const (
	JobsTable   = "fieldcrypt_reencrypt_jobs"
	ChunksTable = "fieldcrypt_reencrypt_chunks"
)

func schemaSQL(d dbsql.Dialect) []string {
	return []string{
		`CREATE TABLE IF NOT EXISTS ` + JobsTable + ` (
	job_id VARCHAR(191) NOT NULL PRIMARY KEY,
	table_name VARCHAR(191) NOT NULL,
	column_name VARCHAR(191) NOT NULL,
	mode VARCHAR(32) NOT NULL,
	total_rows BIGINT NOT NULL DEFAULT 0,
	chunks INTEGER NOT NULL DEFAULT 0,
	created_ms BIGINT NOT NULL,
	finished_ms BIGINT NULL
)`,
		`CREATE TABLE IF NOT EXISTS ` + ChunksTable + ` (
	job_id VARCHAR(191) NOT NULL,
	chunk_no INTEGER NOT NULL,
	lo_pk TEXT NULL,
	hi_pk TEXT NULL,
	last_pk TEXT NULL,
	done INTEGER NOT NULL DEFAULT 0,
	owner VARCHAR(191) NULL,
	lease_until BIGINT NOT NULL DEFAULT 0,
	lease_gen BIGINT NOT NULL DEFAULT 0,
	seq BIGINT NOT NULL DEFAULT 0,
	rows_done BIGINT NOT NULL DEFAULT 0,
	changed BIGINT NOT NULL DEFAULT 0,
	failed BIGINT NOT NULL DEFAULT 0,
	takeovers INTEGER NOT NULL DEFAULT 0,
	updated_ms BIGINT NOT NULL DEFAULT 0,
	PRIMARY KEY (job_id, chunk_no)
)`,
	}
}

// CreateTables creates the job tables if they do not exist. Run calls it;
// it is exported for deployments that create tables ahead of time
// (fieldcrypt init does, so that reencrypt runs no DDL on a live
// database).
func CreateTables(ctx context.Context, db *gorm.DB) error {
	d, err := dbsql.Of(db)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidOptions, err)
	}
	sqlDB, err := db.DB()
	if err != nil {
		return err
	}
	return ensureSchema(ctx, sqlDB, d)
}

// EnsureSchema creates the job tables if they do not exist.
//
// Deprecated: use CreateTables (the same function); kept for one release.
func EnsureSchema(ctx context.Context, db *gorm.DB) error { return CreateTables(ctx, db) }

func ensureSchema(ctx context.Context, db *sql.DB, d dbsql.Dialect) error {
	for _, stmt := range schemaSQL(d) {
		if _, err := db.ExecContext(ctx, stmt); err != nil {
			// Two processes creating the table at once on PostgreSQL: the
			// loser sees a unique violation on the catalog; the table is
			// there all the same.
			if _, err2 := db.ExecContext(ctx, "SELECT 1 FROM "+JobsTable+" WHERE 1 = 0"); err2 != nil || !isDuplicate(err) {
				return fmt.Errorf("reencrypt: creating job tables: %w", err)
			}
		}
	}
	return nil
}

func isDuplicate(err error) bool {
	return dbsql.UniqueViolation(err) || (err != nil && strings.Contains(err.Error(), "already exists"))
}

type jobRow struct {
	table, column, mode string
	total               int64
	chunks              int
	finished            bool
}

func (r *runner) loadJob(ctx context.Context, q querier) (jobRow, bool, error) {
	s := &dbsql.Buf{D: r.d}
	s.W("SELECT table_name, column_name, mode, total_rows, chunks, finished_ms FROM ", JobsTable, " WHERE job_id = ").P(r.opts.JobID)
	rows, err := q.QueryContext(ctx, s.String(), s.Args...)
	if err != nil {
		return jobRow{}, false, fmt.Errorf("reencrypt: loading job: %w", err)
	}
	defer rows.Close()
	if !rows.Next() {
		return jobRow{}, false, rows.Err()
	}
	var j jobRow
	var fin sql.NullInt64
	if err := rows.Scan(&j.table, &j.column, &j.mode, &j.total, &j.chunks, &fin); err != nil {
		return jobRow{}, false, err
	}
	j.finished = fin.Valid
	return j, true, rows.Err()
}

// plan loads the job, creating it and its chunks if it does not exist (or,
// unless the id is explicit, if it finished). Planning is one transaction:
// a process that dies while planning leaves nothing behind, and a second
// process's insert of the same job id waits for the first to commit.
func (r *runner) plan(ctx context.Context, explicitID bool) (jobRow, error) {
	for attempt := 0; ; attempt++ {
		j, err := r.planOnce(ctx, explicitID)
		if err != nil && dbsql.Retryable(err) && attempt < 5 {
			time.Sleep(time.Duration(50*(attempt+1)) * time.Millisecond)
			continue
		}
		if err != nil {
			return j, err
		}
		if j.table != r.col.Table || j.column != r.col.Column || j.mode != r.opts.Mode.String() {
			return j, fmt.Errorf("%w: job %q is %s of %s.%s", ErrJobMismatch, r.opts.JobID, j.mode, j.table, j.column)
		}
		return j, nil
	}
}

func (r *runner) planOnce(ctx context.Context, explicitID bool) (jobRow, error) {
	if j, ok, err := r.loadJob(ctx, r.db); err != nil || (ok && (!j.finished || explicitID)) {
		return j, err
	}
	tx, err := r.db.BeginTx(ctx, nil)
	if err != nil {
		return jobRow{}, err
	}
	defer func() { _ = tx.Rollback() }()
	if !explicitID {
		s := &dbsql.Buf{D: r.d}
		s.W("DELETE FROM ", JobsTable, " WHERE job_id = ").P(r.opts.JobID).W(" AND finished_ms IS NOT NULL")
		res, err := tx.ExecContext(ctx, s.String(), s.Args...)
		if err != nil {
			return jobRow{}, fmt.Errorf("reencrypt: replacing finished job: %w", err)
		}
		if n, _ := res.RowsAffected(); n > 0 {
			s := &dbsql.Buf{D: r.d}
			s.W("DELETE FROM ", ChunksTable, " WHERE job_id = ").P(r.opts.JobID)
			if _, err := tx.ExecContext(ctx, s.String(), s.Args...); err != nil {
				return jobRow{}, err
			}
		}
	}
	s := &dbsql.Buf{D: r.d}
	if r.d == dbsql.MySQL {
		s.W("INSERT IGNORE INTO ")
	} else {
		s.W("INSERT INTO ")
	}
	s.W(JobsTable, " (job_id, table_name, column_name, mode, created_ms) VALUES (").
		P(r.opts.JobID).W(",").P(r.col.Table).W(",").P(r.col.Column).W(",").P(r.opts.Mode.String()).W(",").P(r.nowMS()).W(")")
	if r.d != dbsql.MySQL {
		s.W(" ON CONFLICT (job_id) DO NOTHING")
	}
	res, err := tx.ExecContext(ctx, s.String(), s.Args...)
	if err != nil {
		return jobRow{}, fmt.Errorf("reencrypt: creating job: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		// Someone else planned it meanwhile.
		_ = tx.Rollback()
		j, _, err := r.loadJob(ctx, r.db)
		return j, err
	}

	// Walk the primary key once and cut it every ChunkSize rows.
	bounds, total, err := r.boundaries(ctx, tx)
	if err != nil {
		return jobRow{}, err
	}
	var lo *string
	chunkNo := 0
	insert := func(batch [][2]*string, first int) error {
		if len(batch) == 0 {
			return nil
		}
		s := &dbsql.Buf{D: r.d}
		s.W("INSERT INTO ", ChunksTable, " (job_id, chunk_no, lo_pk, hi_pk) VALUES ")
		for i, b := range batch {
			if i > 0 {
				s.W(",")
			}
			s.W("(").P(r.opts.JobID).W(",").P(first + i).W(",").P(nullStr(b[0])).W(",").P(nullStr(b[1])).W(")")
		}
		_, err := tx.ExecContext(ctx, s.String(), s.Args...)
		return err
	}
	var batch [][2]*string
	first := 0
	for i := 0; i <= len(bounds); i++ {
		var hi *string
		if i < len(bounds) {
			b := bounds[i]
			hi = &b
		}
		batch = append(batch, [2]*string{lo, hi})
		chunkNo++
		lo = hi
		if len(batch) == 200 {
			if err := insert(batch, first); err != nil {
				return jobRow{}, fmt.Errorf("reencrypt: planning chunks: %w", err)
			}
			first += len(batch)
			batch = batch[:0]
		}
	}
	if err := insert(batch, first); err != nil {
		return jobRow{}, fmt.Errorf("reencrypt: planning chunks: %w", err)
	}
	s = &dbsql.Buf{D: r.d}
	s.W("UPDATE ", JobsTable, " SET total_rows = ").P(total).W(", chunks = ").P(chunkNo).W(" WHERE job_id = ").P(r.opts.JobID)
	if _, err := tx.ExecContext(ctx, s.String(), s.Args...); err != nil {
		return jobRow{}, err
	}
	if err := tx.Commit(); err != nil {
		return jobRow{}, fmt.Errorf("reencrypt: committing plan: %w", err)
	}
	r.opts.Logger.InfoContext(ctx, "reencrypt: planned job", "job", r.opts.JobID, "table", r.col.Table, "column", r.col.Column, "rows", total, "chunks", chunkNo)
	return jobRow{table: r.col.Table, column: r.col.Column, mode: r.opts.Mode.String(), total: total, chunks: chunkNo}, nil
}

func nullStr(s *string) any {
	if s == nil {
		return nil
	}
	return *s
}

// boundaries returns the primary keys that end each full chunk (the last
// chunk is open-ended, so rows inserted past the end are covered) and the
// row count.
func (r *runner) boundaries(ctx context.Context, q querier) ([]string, int64, error) {
	var (
		out   []string
		n     int64
		since int
	)
	err := r.t.EachKey(ctx, q, func(key []any) {
		n++
		since++
		if since == r.opts.ChunkSize {
			out = append(out, r.t.Text(key))
			since = 0
		}
	})
	if err != nil {
		return nil, 0, fmt.Errorf("reencrypt: planning: %w", err)
	}
	// A boundary that is the last row leaves an empty open chunk after it:
	// harmless, and it catches rows inserted meanwhile.
	return out, n, nil
}

// chunk is a leased chunk.
type chunk struct {
	no       int
	lo, hi   *string // (lo, hi]
	last     *string // checkpoint
	gen      int64
	takeover bool
}

func (c *chunk) start() *string {
	if c.last != nil {
		return c.last
	}
	return c.lo
}

func scanChunk(rows *sql.Rows) (*chunk, sql.NullString, int64, error) {
	var (
		c            chunk
		lo, hi, last sql.NullString
		owner        sql.NullString
		until        int64
	)
	if err := rows.Scan(&c.no, &lo, &hi, &last, &owner, &until, &c.gen); err != nil {
		return nil, owner, 0, err
	}
	if lo.Valid {
		c.lo = &lo.String
	}
	if hi.Valid {
		c.hi = &hi.String
	}
	if last.Valid {
		c.last = &last.String
	}
	return &c, owner, until, nil
}

// claim leases the next free chunk: never leased, released, or with an
// expired lease. It returns nil when none is free now.
func (r *runner) claim(ctx context.Context) (*chunk, error) {
	now := r.nowMS()
	until := now + r.opts.LeaseTTL.Milliseconds()
	sel := func(limit int, lock bool) *dbsql.Buf {
		s := &dbsql.Buf{D: r.d}
		s.W("SELECT chunk_no, lo_pk, hi_pk, last_pk, owner, lease_until, lease_gen FROM ", ChunksTable,
			" WHERE job_id = ").P(r.opts.JobID).W(" AND done = 0 AND lease_until < ").P(now).
			W(" ORDER BY chunk_no LIMIT ", strconv.Itoa(limit))
		if lock {
			s.W(" FOR UPDATE SKIP LOCKED")
		}
		return s
	}
	take := func(q querier, c *chunk, optimistic bool) (bool, error) {
		s := &dbsql.Buf{D: r.d}
		s.W("UPDATE ", ChunksTable, " SET owner = ").P(r.opts.Owner).W(", lease_until = ").P(until).
			W(", lease_gen = lease_gen + 1, seq = seq + 1, updated_ms = ").P(now)
		if c.takeover {
			s.W(", takeovers = takeovers + 1")
		}
		s.W(" WHERE job_id = ").P(r.opts.JobID).W(" AND chunk_no = ").P(c.no)
		if optimistic {
			s.W(" AND lease_gen = ").P(c.gen).W(" AND done = 0")
		}
		res, err := q.ExecContext(ctx, s.String(), s.Args...)
		if err != nil {
			return false, err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return false, err
		}
		c.gen++
		return n == 1, nil
	}

	if r.d == dbsql.SQLite {
		// Optimistic claim: the update wins only if nobody bumped
		// lease_gen since we read it. (SQLite is single-host anyway.)
		s := sel(r.opts.Workers+1, false)
		rows, err := r.db.QueryContext(ctx, s.String(), s.Args...)
		if err != nil {
			return nil, fmt.Errorf("reencrypt: claiming a chunk: %w", err)
		}
		var cands []*chunk
		for rows.Next() {
			c, owner, _, err := scanChunk(rows)
			if err != nil {
				rows.Close()
				return nil, err
			}
			c.takeover = owner.Valid
			cands = append(cands, c)
		}
		rows.Close()
		for _, c := range cands {
			ok, err := take(r.db, c, true)
			if err != nil {
				if dbsql.Retryable(err) {
					continue
				}
				return nil, fmt.Errorf("reencrypt: claiming a chunk: %w", err)
			}
			if ok {
				return c, nil
			}
		}
		return nil, nil
	}

	tx, err := r.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer func() { _ = tx.Rollback() }()
	s := sel(1, true)
	rows, err := tx.QueryContext(ctx, s.String(), s.Args...)
	if err != nil {
		return nil, fmt.Errorf("reencrypt: claiming a chunk: %w", err)
	}
	var c *chunk
	if rows.Next() {
		var owner sql.NullString
		c, owner, _, err = scanChunk(rows)
		if err != nil {
			rows.Close()
			return nil, err
		}
		c.takeover = owner.Valid
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if c == nil {
		return nil, nil
	}
	if ok, err := take(tx, c, false); err != nil || !ok {
		return nil, fmt.Errorf("reencrypt: claiming chunk %d: %w", c.no, errors.Join(err, errLeaseLost))
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("reencrypt: claiming chunk %d: %w", c.no, err)
	}
	return c, nil
}

// heartbeat extends the lease; false means it is no longer ours.
func (r *runner) heartbeat(ctx context.Context, c *chunk) (bool, error) {
	now := r.nowMS()
	s := &dbsql.Buf{D: r.d}
	s.W("UPDATE ", ChunksTable, " SET lease_until = ").P(now + r.opts.LeaseTTL.Milliseconds()).W(", seq = seq + 1, updated_ms = ").P(now).
		W(" WHERE job_id = ").P(r.opts.JobID).W(" AND chunk_no = ").P(c.no).W(" AND owner = ").P(r.opts.Owner).
		W(" AND lease_gen = ").P(c.gen).W(" AND done = 0")
	res, err := r.db.ExecContext(ctx, s.String(), s.Args...)
	if err != nil {
		return true, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// checkpoint records progress inside the batch's transaction, and fails
// with errLeaseLost (rolling the batch back) if the lease is not ours.
func (r *runner) checkpoint(ctx context.Context, tx querier, c *chunk, last *string, done bool, d *counts) error {
	now := r.nowMS()
	doneInt := 0
	if done {
		doneInt = 1
	}
	s := &dbsql.Buf{D: r.d}
	s.W("UPDATE ", ChunksTable, " SET last_pk = ").P(nullStr(last)).W(", done = ").P(doneInt).
		W(", lease_until = ").P(now + r.opts.LeaseTTL.Milliseconds()).
		W(", seq = seq + 1, rows_done = rows_done + ").P(d.scanned).
		W(", changed = changed + ").P(d.changed).W(", failed = failed + ").P(d.failed).
		W(", updated_ms = ").P(now).
		W(" WHERE job_id = ").P(r.opts.JobID).W(" AND chunk_no = ").P(c.no).W(" AND owner = ").P(r.opts.Owner).
		W(" AND lease_gen = ").P(c.gen).W(" AND done = 0")
	res, err := tx.ExecContext(ctx, s.String(), s.Args...)
	if err != nil {
		return fmt.Errorf("reencrypt: checkpointing chunk %d: %w", c.no, err)
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		return errors.Join(errLeaseLost, err)
	}
	return nil
}

// release gives a chunk back so another process need not wait for the
// lease to expire.
func (r *runner) release(ctx context.Context, c *chunk) {
	s := &dbsql.Buf{D: r.d}
	s.W("UPDATE ", ChunksTable, " SET owner = NULL, lease_until = 0, seq = seq + 1 WHERE job_id = ").P(r.opts.JobID).
		W(" AND chunk_no = ").P(c.no).W(" AND owner = ").P(r.opts.Owner).W(" AND lease_gen = ").P(c.gen).W(" AND done = 0")
	if _, err := r.db.ExecContext(ctx, s.String(), s.Args...); err != nil {
		r.opts.Logger.WarnContext(ctx, "reencrypt: releasing chunk lease failed", "job", r.opts.JobID, "chunk", c.no, "err", err)
	}
}

// releaseAll gives back every unfinished chunk this run (its Owner) still
// leases.
func (r *runner) releaseAll(ctx context.Context) {
	s := &dbsql.Buf{D: r.d}
	s.W("UPDATE ", ChunksTable, " SET owner = NULL, lease_until = 0, seq = seq + 1 WHERE job_id = ").P(r.opts.JobID).
		W(" AND owner = ").P(r.opts.Owner).W(" AND done = 0")
	if _, err := r.db.ExecContext(ctx, s.String(), s.Args...); err != nil {
		r.opts.Logger.WarnContext(ctx, "reencrypt: releasing the run's chunk leases failed", "job", r.opts.JobID, "err", err)
	}
}

// pending reports how many chunks are not done and not leased by this
// process (those, its own workers finish), and the earliest lease expiry
// among them.
func (r *runner) pending(ctx context.Context) (int64, int64, error) {
	s := &dbsql.Buf{D: r.d}
	s.W("SELECT COUNT(*), COALESCE(MIN(lease_until), 0) FROM ", ChunksTable, " WHERE job_id = ").P(r.opts.JobID).
		W(" AND done = 0 AND (owner IS NULL OR owner <> ").P(r.opts.Owner).W(" OR lease_until < ").P(r.nowMS()).W(")")
	var n, minUntil int64
	if err := r.db.QueryRowContext(ctx, s.String(), s.Args...).Scan(&n, &minUntil); err != nil {
		return 0, 0, fmt.Errorf("reencrypt: reading job state: %w", err)
	}
	return n, minUntil, nil
}

// waitState is what a process with nothing to claim waits for: chunks
// leased by other workers, of which stalled have a holder that stopped
// renewing its lease, the first expiring at takeoverAt (database ms).
type waitState struct {
	chunks, stalled int
	takeoverAt      int64
}

// waitingFor reads the leases this process waits on.
func (r *runner) waitingFor(ctx context.Context) (waitState, error) {
	now := r.nowMS()
	s := &dbsql.Buf{D: r.d}
	s.W("SELECT owner, lease_until, updated_ms FROM ", ChunksTable, " WHERE job_id = ").P(r.opts.JobID).
		W(" AND done = 0 AND owner IS NOT NULL AND owner <> ").P(r.opts.Owner).W(" AND lease_until >= ").P(now)
	rows, err := r.db.QueryContext(ctx, s.String(), s.Args...)
	if err != nil {
		return waitState{}, err
	}
	defer rows.Close()
	var w waitState
	for rows.Next() {
		var owner string
		var until, updated int64
		if err := rows.Scan(&owner, &until, &updated); err != nil {
			return waitState{}, err
		}
		w.chunks++
		if stalled(now, updated, until) {
			w.stalled++
			if w.takeoverAt == 0 || until < w.takeoverAt {
				w.takeoverAt = until
			}
		}
	}
	return w, rows.Err()
}

func (r *runner) doneRows(ctx context.Context) int64 {
	s := &dbsql.Buf{D: r.d}
	s.W("SELECT COALESCE(SUM(rows_done), 0) FROM ", ChunksTable, " WHERE job_id = ").P(r.opts.JobID)
	var n int64
	_ = r.db.QueryRowContext(ctx, s.String(), s.Args...).Scan(&n)
	return n
}

func (r *runner) finishJob(ctx context.Context) error {
	s := &dbsql.Buf{D: r.d}
	s.W("UPDATE ", JobsTable, " SET finished_ms = ").P(r.nowMS()).W(" WHERE job_id = ").P(r.opts.JobID).W(" AND finished_ms IS NULL")
	_, err := r.db.ExecContext(ctx, s.String(), s.Args...)
	return err
}
