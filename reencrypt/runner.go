package reencrypt

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/time/rate"
	"gorm.io/gorm"

	"github.com/fieldcrypt/fieldcrypt/envelope"
	"github.com/fieldcrypt/fieldcrypt/internal/dbsql"
)

type runner struct {
	db      *sql.DB
	d       dbsql.Dialect
	t       *dbsql.Table
	env     *envelope.Envelope
	col     Column
	opts    Options
	colType string // PostgreSQL cast of the column
	// readIndexes: the blind-index columns are read (to write or count
	// missing ones); idxTypes are their PostgreSQL casts.
	readIndexes bool
	idxTypes    []string

	clockOffset time.Duration // database clock minus local clock
	limiter     *rate.Limiter
	wait        waitState // what the workers wait for (under mu)

	mu       sync.Mutex
	sum      Summary
	started  time.Time
	total    int64
	baseDone int64
	chunks   int
	progMu   sync.Mutex
	tel      *runTelemetry
}

func newRunner(ctx context.Context, gdb *gorm.DB, env *envelope.Envelope, col Column, opts Options) (*runner, error) {
	d, err := dbsql.Of(gdb)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidOptions, err)
	}
	sqlDB, err := gdb.DB()
	if err != nil {
		return nil, err
	}
	if err := checkColumns(ctx, gdb, col); err != nil {
		return nil, err
	}
	// The caller's pool is used as it is (see PoolSize): library code
	// never changes a caller's connection pool.
	r := &runner{db: sqlDB, d: d, t: dbsql.NewTable(d, col.Table, pkColumns(col.PK)), env: env, col: col, opts: opts, tel: newRunTelemetry(opts)}
	r.readIndexes = r.writesIndexes() || opts.JobID == censusJob
	if opts.RateLimit > 0 {
		r.limiter = rate.NewLimiter(rate.Limit(opts.RateLimit), opts.BatchSize)
	}
	if err := r.introspect(ctx); err != nil {
		return nil, err
	}
	return r, nil
}

// checkColumns makes sure the table and the columns named exist, so that
// a typo in a configuration reads as one, not as a driver error.
func checkColumns(ctx context.Context, gdb *gorm.DB, col Column) error {
	if strings.Contains(col.Table, ".") {
		return nil // schema-qualified: the queries will tell
	}
	m := gdb.WithContext(ctx).Migrator()
	if !m.HasTable(col.Table) {
		return fmt.Errorf("%w: table %s does not exist", ErrInvalidOptions, col.Table)
	}
	names := append(pkColumns(col.PK), col.Column)
	if col.TenantColumn != "" {
		names = append(names, col.TenantColumn)
	}
	for _, c := range names {
		if !m.HasColumn(col.Table, c) {
			return fmt.Errorf("%w: column %s.%s does not exist", ErrInvalidOptions, col.Table, c)
		}
	}
	for _, bi := range col.BlindIndexes {
		if !m.HasColumn(col.Table, bi.Column) {
			return fmt.Errorf("%w: blind index column %s.%s does not exist (create it first: gormcrypt.AutoMigrate adds it)", ErrInvalidOptions, col.Table, bi.Column)
		}
	}
	return nil
}

// introspect learns the key's types, the PostgreSQL column type and the
// database clock.
func (r *runner) introspect(ctx context.Context) error {
	if err := r.t.Introspect(ctx, r.db); err != nil {
		return fmt.Errorf("reencrypt: %s.%s: %w", r.col.Table, r.col.PK, err)
	}
	var err error
	if r.colType, err = dbsql.ColumnType(ctx, r.db, r.d, r.col.Table, r.col.Column); err != nil {
		return fmt.Errorf("%w: column %s.%s: %v", ErrInvalidOptions, r.col.Table, r.col.Column, err)
	}
	for _, bi := range r.col.BlindIndexes {
		ty, err := dbsql.ColumnType(ctx, r.db, r.d, r.col.Table, bi.Column)
		if err != nil {
			return fmt.Errorf("%w: column %s.%s: %v", ErrInvalidOptions, r.col.Table, bi.Column, err)
		}
		r.idxTypes = append(r.idxTypes, ty)
	}
	r.clockOffset = clockOffset(ctx, r.db, r.d)
	return nil
}

// nowMS is the database's clock in Unix milliseconds, so leases compare
// the same on every host.
func (r *runner) nowMS() int64 { return time.Now().Add(r.clockOffset).UnixMilli() }

// counts is a delta of Summary counters.
type counts struct {
	scanned, changed, current, nulls, plain, conflicts, vanished, failed int64
	indexed                                                              int64
	failures                                                             []RowFailure
}

func (c *counts) add(o outcome) {
	switch o {
	case oNull:
		c.nulls++
	case oCurrent:
		c.current++
	case oChange:
		c.changed++
	case oPlain:
		c.plain++
	case oIndex:
		c.indexed++
	}
}

type outcome int

const (
	oNull outcome = iota
	oCurrent
	oChange
	oPlain
	oFail
	oIndex // the value stays; its missing blind indexes are written
)

// transform decides what happens to one value: its new value and the
// values of the column's blind indexes (nil unless indexes are written).
func (r *runner) transform(ctx context.Context, rw row) ([]byte, []any, outcome, error) {
	if rw.val == nil {
		return nil, nil, oNull, nil
	}
	if r.opts.transform != nil {
		return r.opts.transform(rw.val), nil, oChange, nil
	}
	b := envelope.Binding{Class: r.col.Class, Tenant: rw.tenant, Table: r.col.Table, Column: r.col.Column}
	if !envelope.IsCiphertext(rw.val) {
		if r.opts.Mode != EncryptExisting {
			return nil, nil, oPlain, nil
		}
		pt := rw.val
		if r.col.Canonical != nil {
			c, err := r.col.Canonical(pt)
			if err != nil {
				return nil, nil, oFail, fmt.Errorf("%w: %s.%s: the legacy value does not convert to the application's form: %w", ErrMalformedValue, r.col.Table, r.col.Column, err)
			}
			pt = c
			defer clear(c)
		}
		var (
			out []byte
			err error
		)
		if r.col.Deterministic {
			out, err = r.env.SealDeterministic(ctx, b, pt)
		} else {
			sb := b
			if r.col.RowBound {
				sb.Row = rw.key
			}
			out, err = r.env.Seal(ctx, sb, pt)
		}
		if err != nil {
			return nil, nil, oFail, err
		}
		idx, err := r.indexes(ctx, b, pt)
		if err != nil {
			return nil, nil, oFail, err
		}
		if r.col.Text {
			out = []byte(envelope.EncodeText(out))
		}
		return out, idx, oChange, nil
	}
	h, err := envelope.Inspect(rw.val)
	if err != nil {
		return nil, nil, oFail, fmt.Errorf("%w: %w", ErrMalformedValue, err)
	}
	if h.Class != r.col.Class {
		return nil, nil, oFail, fmt.Errorf("%w: value is of class %s, column is %s", envelope.ErrAuthentication, h.Class, r.col.Class)
	}
	switch r.opts.Mode {
	case EncryptExisting:
		if !r.writesIndexes() || !rw.missingIndex() {
			return nil, nil, oCurrent, nil
		}
		// Encrypted, but an index is NULL (a migration run before
		// indexes were written): write the indexes, keep the value.
		ob := b
		if h.RowBound {
			ob.Row = rw.key
		}
		pt, err := r.env.Open(ctx, ob, rw.val)
		if err != nil {
			return nil, nil, oFail, err
		}
		defer clear(pt)
		idx, err := r.indexes(ctx, b, pt)
		if err != nil {
			return nil, nil, oFail, err
		}
		return rw.val, idx, oIndex, nil
	case Rewrap:
		if !h.Suite.Randomized() {
			return nil, nil, oCurrent, nil
		}
		out, err := r.env.Rewrap(ctx, b, rw.val)
		if err != nil {
			return nil, nil, oFail, err
		}
		if bytes.Equal(out, rw.val) {
			return nil, nil, oCurrent, nil
		}
		return out, nil, oChange, nil
	default: // Full
		if h.RowBound || r.col.RowBound {
			b.Row = rw.key
		}
		if r.writesIndexes() {
			return r.resealIndexed(ctx, b, rw)
		}
		out, err := r.env.Reencrypt(ctx, b, rw.val)
		if err != nil {
			return nil, nil, oFail, err
		}
		if bytes.Equal(out, rw.val) {
			return nil, nil, oCurrent, nil
		}
		return out, nil, oChange, nil
	}
}

// resealIndexed is Full for a column with blind indexes: the value is
// sealed again exactly as Reencrypt does (same suite and encoding; it fails
// if the source key is destroyed meanwhile) and its indexes are computed
// under the newest search key from the plaintext in the same pass.
func (r *runner) resealIndexed(ctx context.Context, b envelope.Binding, rw row) ([]byte, []any, outcome, error) {
	var idx []any
	out, err := r.env.ReencryptWith(ctx, b, rw.val, func(pt []byte) (err error) {
		idx, err = r.indexes(ctx, b, pt)
		return err
	})
	if err != nil {
		return nil, nil, oFail, err
	}
	return out, idx, oChange, nil
}

// writesIndexes reports whether this run writes blind indexes.
func (r *runner) writesIndexes() bool {
	return len(r.col.BlindIndexes) > 0 && r.opts.Mode != Rewrap && r.opts.transform == nil
}

// indexes computes the column's blind indexes of pt (nil when the run
// writes none), exactly as gormcrypt does: the value's binding without
// the row, the index's spec, lower-case hex.
func (r *runner) indexes(ctx context.Context, b envelope.Binding, pt []byte) ([]any, error) {
	if !r.writesIndexes() {
		return nil, nil
	}
	b.Row = ""
	out := make([]any, len(r.col.BlindIndexes))
	for i, bi := range r.col.BlindIndexes {
		h, err := r.env.ComputeBlindIndexText(ctx, b, bi.Spec, pt)
		if err != nil {
			return nil, err
		}
		out[i] = h
	}
	return out, nil
}

// fatal reports errors that must stop the run rather than mark a row
// failed: the key source is unreachable, or the context ended.
func fatal(err error) bool {
	return errors.Is(err, envelope.ErrKeyUnavailable) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// prepare transforms a batch: it returns the swaps to make and counts the
// rest into c.
func (r *runner) prepare(ctx context.Context, rows []row, c *counts) ([]update, error) {
	ups := make([]update, 0, len(rows))
	for _, rw := range rows {
		nv, idx, o, err := r.transform(ctx, rw)
		if err != nil {
			if fatal(err) {
				return nil, err
			}
			c.failed++
			c.failures = append(c.failures, RowFailure{Row: rw.key, Err: err})
			continue
		}
		if o == oChange || o == oIndex {
			ups = append(ups, update{pk: rw.pk, old: rw.val, new: nv, idx: idx, indexOnly: o == oIndex})
			continue
		}
		c.add(o)
	}
	return ups, nil
}

func (r *runner) run(ctx context.Context, explicitID bool) (Summary, error) {
	r.started = time.Now()
	r.sum = Summary{JobID: r.opts.JobID, Mode: r.opts.Mode, DryRun: r.opts.DryRun}
	if r.opts.DryRun {
		err := r.runDry(ctx)
		return r.finish(err)
	}
	if err := ensureSchema(ctx, r.db, r.d); err != nil {
		return r.sum, err
	}
	job, err := r.plan(ctx, explicitID)
	if err != nil {
		return r.sum, err
	}
	if job.finished {
		r.sum.JobFinished = true
		return r.finish(nil)
	}
	r.total, r.chunks = job.total, job.chunks
	r.baseDone = r.doneRows(ctx)

	stopProg := r.startProgress()
	g, gctx := errgroup.WithContext(ctx)
	for i := 0; i < r.opts.Workers; i++ {
		g.Go(func() error { return r.worker(gctx) })
	}
	err = g.Wait()
	stopProg()
	if err != nil && ctx.Err() != nil {
		// A claim whose commit raced the cancellation may have taken a
		// lease the worker never saw: give back every lease this run
		// holds, so a rerun need not wait for them to expire.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		r.releaseAll(rctx)
		cancel()
	}
	if cerr := ctx.Err(); err != nil && cerr != nil && !errors.Is(err, cerr) {
		// The caller stopped the job. A driver may report that as the
		// transaction it rolled back ("sql: transaction has already been
		// committed or rolled back") rather than as the context's error;
		// callers test errors.Is(err, context.Canceled), so say both.
		err = fmt.Errorf("%w (%w)", cerr, err)
	}
	if err == nil {
		var n int64
		if n, _, err = r.pending(ctx); err == nil && n == 0 {
			if err = r.finishJob(ctx); err == nil {
				r.sum.JobFinished = true
			}
		}
	}
	return r.finish(err)
}

func (r *runner) finish(err error) (Summary, error) {
	r.mu.Lock()
	r.sum.Duration = time.Since(r.started)
	s := r.sum
	r.mu.Unlock()
	r.emit(true)
	if err == nil && s.Failed > 0 {
		err = fmt.Errorf("%w: %d of %d rows in %s.%s (first: %v)", ErrRowsFailed, s.Failed, s.Scanned, r.col.Table, r.col.Column, s.Failures[0])
	}
	return s, err
}

func (r *runner) worker(ctx context.Context) error {
	poll := min(r.opts.LeaseTTL/4, time.Second)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		c, err := r.claim(ctx)
		if err != nil {
			if dbsql.Retryable(err) || errors.Is(err, errLeaseLost) {
				time.Sleep(50 * time.Millisecond)
				continue
			}
			return err
		}
		if c == nil {
			n, minUntil, err := r.pending(ctx)
			if err != nil {
				return err
			}
			if n == 0 {
				return nil
			}
			if w, err := r.waitingFor(ctx); err == nil {
				r.mu.Lock()
				r.wait = w
				r.mu.Unlock()
			}
			// Chunks are leased by others: wait for them to finish or for a
			// lease to expire, then try again.
			wait := poll
			switch d := time.Duration(minUntil-r.nowMS()) * time.Millisecond; {
			case d <= 0: // claimable now: we lost a race for it
				wait = 10 * time.Millisecond
			case d < wait:
				wait = d + 10*time.Millisecond
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(wait):
			}
			continue
		}
		r.mu.Lock()
		r.wait = waitState{}
		r.mu.Unlock()
		if c.takeover {
			r.opts.Logger.InfoContext(ctx, "reencrypt: took over chunk with an expired lease", "job", r.opts.JobID, "chunk", c.no)
			r.mu.Lock()
			r.sum.ChunksTakenOver++
			r.mu.Unlock()
		}
		cctx, endChunk := r.tel.chunk(ctx, c.no, c.takeover)
		err = r.processChunk(cctx, c)
		switch {
		case err == nil:
			endChunk("done")
			r.mu.Lock()
			r.sum.ChunksDone++
			r.mu.Unlock()
		case errors.Is(err, errLeaseLost):
			endChunk("lease_lost")
			r.opts.Logger.WarnContext(ctx, "reencrypt: lost the lease of a chunk; another process continues it", "job", r.opts.JobID, "chunk", c.no)
		default:
			endChunk("failed")
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			r.release(rctx, c)
			cancel()
			return err
		}
	}
}

func (r *runner) processChunk(ctx context.Context, c *chunk) error {
	cctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	hbDone := make(chan struct{})
	go func() {
		defer close(hbDone)
		t := time.NewTicker(r.opts.LeaseTTL / 3)
		defer t.Stop()
		for {
			select {
			case <-cctx.Done():
				return
			case <-t.C:
				ok, err := r.heartbeat(cctx, c)
				if err != nil {
					r.opts.Logger.WarnContext(cctx, "reencrypt: lease heartbeat failed", "job", r.opts.JobID, "chunk", c.no, "err", err)
					continue
				}
				if !ok {
					cancel(errLeaseLost)
					return
				}
			}
		}
	}()
	defer func() { cancel(nil); <-hbDone }()

	// A two-stage pipeline: while batch k's swaps and checkpoint commit,
	// batch k+1 is read and its new values computed, so the key
	// operations overlap the database's work instead of adding to it.
	pipe := make(chan *batch, 1)
	pctx, stopProducer := context.WithCancel(cctx)
	prodDone := make(chan struct{})
	go func() {
		defer close(prodDone)
		defer close(pipe)
		after := c.start()
		for {
			b := r.readPrepare(pctx, c, after)
			select {
			case pipe <- b:
			case <-pctx.Done():
				return
			}
			if b.err != nil || b.done {
				return
			}
			after = b.last
		}
	}()
	defer func() { stopProducer(); <-prodDone }()

	for b := range pipe {
		err := b.err
		if err == nil {
			err = cctx.Err()
		}
		for attempt := 0; err == nil; attempt++ {
			err = r.commitBatch(cctx, c, b)
			if err == nil || !dbsql.Retryable(err) || attempt >= 5 || cctx.Err() != nil {
				break
			}
			// Deadlock or serialization failure: read the batch again.
			time.Sleep(time.Duration(20*(attempt+1)) * time.Millisecond)
			// Same range as before, whatever its length now: the next
			// batch, already read, starts after b.last.
			if b = r.rereadPrepare(cctx, b); b.err != nil {
				err = b.err
			}
		}
		if err != nil {
			if cause := context.Cause(cctx); errors.Is(cause, errLeaseLost) {
				return errLeaseLost
			}
			return err
		}
		r.account(b.d)
		if b.done {
			return nil
		}
	}
	if cause := context.Cause(cctx); errors.Is(cause, errLeaseLost) {
		return errLeaseLost
	}
	return cctx.Err()
}

// batch is a batch read and prepared, waiting to be committed.
type batch struct {
	after, last *string // checkpoint before and after it
	done        bool    // short batch: the chunk ends with it
	ups         []update
	d           *counts
	err         error
}

// readPrepare reads the batch after `after` and computes its new values.
func (r *runner) readPrepare(ctx context.Context, c *chunk, after *string) *batch {
	b := &batch{after: after, last: after}
	rows, err := r.readBatch(ctx, r.db, after, c.hi, r.opts.BatchSize)
	if err != nil {
		b.err = err
		return b
	}
	b.d = &counts{scanned: int64(len(rows))}
	b.done = len(rows) < r.opts.BatchSize
	if len(rows) > 0 {
		k := r.t.Text(rows[len(rows)-1].pk)
		b.last = &k
		if r.limiter != nil {
			if err := r.limiter.WaitN(ctx, len(rows)); err != nil {
				b.err = err
				return b
			}
		}
	}
	b.ups, b.err = r.prepare(ctx, rows, b.d)
	return b
}

// rereadPrepare reads and prepares the range (b.after, b.last] again,
// keeping its bounds.
func (r *runner) rereadPrepare(ctx context.Context, b *batch) *batch {
	nb := &batch{after: b.after, last: b.last, done: b.done, d: &counts{}}
	if b.last == nil || (b.after != nil && *b.after == *b.last) {
		return nb
	}
	rows, err := r.readBatch(ctx, r.db, b.after, b.last, 1<<30)
	if err != nil {
		nb.err = err
		return nb
	}
	nb.d.scanned = int64(len(rows))
	nb.ups, nb.err = r.prepare(ctx, rows, nb.d)
	return nb
}

// commitBatch swaps a prepared batch and checkpoints it, all or nothing.
// On error nothing of the batch is counted (b.d may hold partial retry
// counts, and the caller prepares the batch afresh).
//
// A batch once begun is finished even if ctx ends meanwhile (it is short,
// and the lease's fencing token still guards it): a commit cut off by a
// cancellation would leave the caller not knowing whether it happened.
func (r *runner) commitBatch(ctx context.Context, c *chunk, b *batch) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	tx, err := r.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	d := *b.d
	if err := r.swap(ctx, tx, b.ups, &d); err != nil {
		if !dbsql.UniqueViolation(err) || !r.writesIndexes() {
			return err
		}
		// A blind index under a unique index collides (two legacy rows
		// with the same value): swap row by row, so the colliding rows
		// fail, named, and the others are done.
		_ = tx.Rollback()
		if tx, err = r.db.BeginTx(ctx, nil); err != nil {
			return err
		}
		defer func() { _ = tx.Rollback() }()
		d = *b.d
		if err := r.swapEach(ctx, tx, b.ups, &d); err != nil {
			return err
		}
	}
	if err := r.checkpoint(ctx, tx, c, b.last, b.done, &d); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("reencrypt: committing batch: %w", err)
	}
	*b.d = d
	return nil
}

// swap applies ups with compare-and-swap; rows that changed meanwhile are
// re-read under a row lock, transformed again and swapped again, at most
// MaxRetries times.
func (r *runner) swap(ctx context.Context, tx querier, ups []update, d *counts) error {
	for attempt := 0; len(ups) > 0; attempt++ {
		applied, err := r.bulkCAS(ctx, tx, ups)
		if err != nil {
			return err
		}
		var missed [][]any
		for _, u := range ups {
			switch {
			case !applied[r.t.Text(u.pk)]:
				missed = append(missed, u.pk)
			case u.indexOnly:
				d.indexed++
			default:
				d.changed++
			}
		}
		if len(missed) == 0 {
			return nil
		}
		d.conflicts += int64(len(missed))
		if attempt >= r.opts.MaxRetries {
			for _, pk := range missed {
				k := r.col.rowKey(r.t, pk)
				d.failed++
				d.failures = append(d.failures, RowFailure{Row: k, Err: fmt.Errorf("%w: %s.%s row %s after %d retries", ErrConflict, r.col.Table, r.col.Column, k, attempt)})
			}
			return nil
		}
		fresh, err := r.readLocked(ctx, tx, missed)
		if err != nil {
			return err
		}
		d.vanished += int64(len(missed) - len(fresh))
		ups, err = r.prepare(ctx, fresh, d)
		if err != nil {
			return err
		}
	}
	return nil
}

// swapEach is swap one row at a time, each under a savepoint: a row
// whose blind index violates a unique index is rolled back and counted as
// failed (ErrDuplicateIndex), the others are swapped.
func (r *runner) swapEach(ctx context.Context, tx querier, ups []update, d *counts) error {
	for _, u := range ups {
		if _, err := tx.ExecContext(ctx, "SAVEPOINT fc_row"); err != nil {
			return fmt.Errorf("reencrypt: savepoint: %w", err)
		}
		err := r.swap(ctx, tx, []update{u}, d)
		if err == nil {
			if _, err := tx.ExecContext(ctx, "RELEASE SAVEPOINT fc_row"); err != nil {
				return fmt.Errorf("reencrypt: savepoint: %w", err)
			}
			continue
		}
		if !dbsql.UniqueViolation(err) {
			return err
		}
		if _, err := tx.ExecContext(ctx, "ROLLBACK TO SAVEPOINT fc_row"); err != nil {
			return fmt.Errorf("reencrypt: savepoint: %w", err)
		}
		k := r.col.rowKey(r.t, u.pk)
		d.failed++
		// The driver's message may quote the index value: not repeated.
		d.failures = append(d.failures, RowFailure{Row: k, Err: fmt.Errorf("%w: %s.%s row %s", ErrDuplicateIndex, r.col.Table, r.col.Column, k)})
	}
	return nil
}

func (r *runner) account(d *counts) {
	r.tel.countRows(context.Background(), d)
	r.mu.Lock()
	s := &r.sum
	s.Scanned += d.scanned
	s.Changed += d.changed
	s.Indexed += d.indexed
	s.Current += d.current
	s.Nulls += d.nulls
	s.Plaintext += d.plain
	s.Conflicts += d.conflicts
	s.Vanished += d.vanished
	s.Failed += d.failed
	for _, f := range d.failures {
		if len(s.Failures) < r.opts.MaxFailures {
			s.Failures = append(s.Failures, f)
		}
		r.opts.Logger.Warn("reencrypt: row failed", "job", r.opts.JobID, "table", r.col.Table, "column", r.col.Column, "row", f.Row, "err", f.Err)
	}
	r.mu.Unlock()
}

// runDry walks the table once and counts; it writes nothing.
func (r *runner) runDry(ctx context.Context) error {
	return r.t.Walk(ctx, r.db, r.cols(), r.opts.BatchSize, func(batch []dbsql.Row) error {
		rows := r.rows(batch)
		if len(rows) > 0 && r.limiter != nil {
			if err := r.limiter.WaitN(ctx, len(rows)); err != nil {
				return err
			}
		}
		d := &counts{scanned: int64(len(rows))}
		ups, err := r.prepare(ctx, rows, d)
		if err != nil {
			return err
		}
		for _, u := range ups {
			if u.indexOnly {
				d.indexed++
			} else {
				d.changed++
			}
		}
		r.account(d)
		r.emit(false)
		if len(rows) < r.opts.BatchSize {
			r.sum.JobFinished = true
		}
		return nil
	})
}

func (r *runner) startProgress() func() {
	if r.opts.Progress == nil {
		return func() {}
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(r.opts.ProgressEvery)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				r.emit(false)
			}
		}
	}()
	return func() { close(stop); <-done }
}

func (r *runner) emit(final bool) {
	if r.opts.Progress == nil {
		return
	}
	r.progMu.Lock()
	defer r.progMu.Unlock()
	r.mu.Lock()
	s, w := r.sum, r.wait
	r.mu.Unlock()
	el := time.Since(r.started)
	p := Progress{JobID: s.JobID, Scanned: s.Scanned, Done: r.baseDone + s.Scanned, Total: r.total,
		Changed: s.Changed, Conflicts: s.Conflicts, Failed: s.Failed, ChunksDone: s.ChunksDone,
		ChunksTotal: r.chunks, Elapsed: el, Final: final}
	if !final && w.chunks > 0 {
		p.Waiting, p.Stalled = w.chunks, w.stalled
		if w.stalled > 0 {
			p.TakeoverIn = max(time.Duration(w.takeoverAt-r.nowMS())*time.Millisecond, 0)
		}
	}
	if el > 0 {
		p.Rate = float64(s.Scanned) / el.Seconds()
	}
	if p.Rate > 0 && p.Total > p.Done {
		p.ETA = time.Duration(float64(p.Total-p.Done) / p.Rate * float64(time.Second))
	}
	r.opts.Progress(p)
}
