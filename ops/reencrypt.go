package ops

import (
	"context"
	"errors"
	"fmt"

	"github.com/fieldcrypt/fieldcrypt/config"
	"github.com/fieldcrypt/fieldcrypt/fielderr"
	"github.com/fieldcrypt/fieldcrypt/reencrypt"
)

// ColumnResult is what a re-encryption did to one column.
type ColumnResult struct {
	Table           string   `json:"table"`
	Column          string   `json:"column"`
	Class           string   `json:"class"`
	JobID           string   `json:"job_id"`
	Mode            string   `json:"mode"`
	DryRun          bool     `json:"dry_run"`
	Scanned         int64    `json:"scanned"`
	Changed         int64    `json:"changed"` // in a dry run: would change
	Current         int64    `json:"current"`
	Indexed         int64    `json:"indexed,omitempty"` // encrypted values whose missing blind index was written
	Null            int64    `json:"null"`
	Plaintext       int64    `json:"plaintext"`
	Conflicts       int64    `json:"conflicts"`
	Vanished        int64    `json:"vanished"`
	Failed          int64    `json:"failed"`
	FailedRows      []string `json:"failed_rows,omitempty"` // row ids, never values
	ChunksDone      int      `json:"chunks_done"`
	ChunksTakenOver int      `json:"chunks_taken_over"`
	JobFinished     bool     `json:"job_finished"`
	DurationS       float64  `json:"duration_s"`
	Error           string   `json:"error,omitempty"`
	// Cleanup (encrypt-existing) is the statement that removes the old
	// plaintexts from the table's files (reencrypt.AfterMigration).
	Cleanup string `json:"cleanup,omitempty"`
}

// ReencryptResult is what Reencrypt did to every column.
type ReencryptResult struct {
	Mode    string            `json:"mode"`
	DryRun  bool              `json:"dry_run"`
	Columns []ColumnResult    `json:"columns"`
	Changed int64             `json:"changed"`
	Failed  int64             `json:"failed"`
	KMS     map[string]uint64 `json:"kms,omitempty"` // keyring counters: KMS calls scale with keys, not rows
	// AfterMigration (encrypt-existing) says how to clear the old
	// plaintexts from this database's files and logs; each column's
	// Cleanup is its table's command.
	AfterMigration *reencrypt.Cleanup `json:"after_migration,omitempty"`
}

// ReencryptOptions tune Reencrypt: the engine's options (Mode, Workers,
// BatchSize, ChunkSize, RateLimit, DryRun, JobID, ...), applied to every
// column. Audit is set to the operator's sink; Progress, when set, is
// called with the column it reports on.
type ReencryptOptions struct {
	reencrypt.Options
	// ColumnProgress, when set, is called with the column and its progress.
	ColumnProgress func(config.Column, reencrypt.Progress)
}

// ErrRowsFailed is reencrypt.ErrRowsFailed: some rows could not be
// processed; every other row was.
var ErrRowsFailed = reencrypt.ErrRowsFailed

// Reencrypt runs the reencrypt engine on each column in turn, with the
// failure policy of an operator's run: rows that fail do not stop the
// other columns; anything else (an interrupt, the KMS or the database
// gone) does. The error of a run whose rows failed is an integrity failure
// (kind Authentication) when values failed authentication or are
// malformed, else carries the first row's error (a destroyed or retired
// key, say). The engine records each column's audit events.
func (o *Operator) Reencrypt(ctx context.Context, cols []config.Column, opts ReencryptOptions) (*ReencryptResult, error) {
	if opts.JobID != "" && len(cols) > 1 {
		return nil, fmt.Errorf("%w: a job id names one job: give exactly one column with it", reencrypt.ErrInvalidOptions)
	}
	if opts.Mode == 0 {
		opts.Mode = reencrypt.Rewrap
	}
	if err := reencrypt.CheckOptions(opts.Options); err != nil {
		return nil, err
	}
	if opts.Mode == reencrypt.EncryptExisting {
		for _, col := range cols {
			if idx := o.unconfiguredIndex(ctx, col); idx != "" {
				return nil, fmt.Errorf("%w: %s: the table has %s, the blind index gormcrypt writes for %s, but the column's configuration names no blind_index: migrated rows would be encrypted but not searchable, nor covered by a unique index. Add blind_index: %s (with blind_index_size / blind_index_argon2 as the field's blindindex tag says)",
					reencrypt.ErrInvalidOptions, col.Name(), idx, col.Column, idx)
			}
		}
	}
	if sqlDB, err := o.DB.DB(); err == nil {
		sqlDB.SetMaxIdleConns(reencrypt.PoolSize(opts.Workers)) // the operator's own pool
	}
	env := o.Envelope()
	res := &ReencryptResult{Mode: opts.Mode.String(), DryRun: opts.DryRun, Columns: []ColumnResult{}}
	var firstErr, sample error
	integrity := false
	for _, col := range cols {
		eo := opts.Options
		eo.Audit = o.Audit
		if eo.MeterProvider == nil {
			eo.MeterProvider = o.MeterProvider
		}
		if eo.TracerProvider == nil {
			eo.TracerProvider = o.TracerProvider
		}
		if opts.ColumnProgress != nil {
			eo.Progress = func(p reencrypt.Progress) { opts.ColumnProgress(col, p) }
		}
		sum, err := reencrypt.Run(ctx, o.DB, env, col.Reencrypt(o.Config.Tenant), eo)
		cr := ColumnResult{
			Table: col.Table, Column: col.Column, Class: col.Class, JobID: sum.JobID, Mode: opts.Mode.String(), DryRun: opts.DryRun,
			Scanned: sum.Scanned, Changed: sum.Changed, Current: sum.Current, Indexed: sum.Indexed, Null: sum.Nulls, Plaintext: sum.Plaintext,
			Conflicts: sum.Conflicts, Vanished: sum.Vanished, Failed: sum.Failed, ChunksDone: sum.ChunksDone,
			ChunksTakenOver: sum.ChunksTakenOver, JobFinished: sum.JobFinished, DurationS: round2(sum.Duration.Seconds()),
		}
		for i, f := range sum.Failures {
			if i < maxFailedRows {
				cr.FailedRows = append(cr.FailedRows, f.Row)
			}
			if sample == nil {
				sample = f.Err
			}
			if k := fielderr.KindOf(f.Err); k == fielderr.Authentication || k == fielderr.Malformed || k == fielderr.Unsupported {
				integrity = true
			}
		}
		if err != nil {
			cr.Error = o.DSN.Redact(err.Error())
		}
		if opts.Mode == reencrypt.EncryptExisting && !opts.DryRun {
			c := reencrypt.AfterMigration(o.DB.Dialector.Name(), col.Table)
			cr.Cleanup = c.Command
			if res.AfterMigration == nil {
				res.AfterMigration = &c
			}
		}
		res.Columns = append(res.Columns, cr)
		res.Changed += sum.Changed
		res.Failed += sum.Failed
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			if !errors.Is(err, reencrypt.ErrRowsFailed) {
				break
			}
		}
	}
	st := o.Keyring.Stats()
	res.KMS = map[string]uint64{"wrap_calls": st.KMSWrapCalls, "unwrap_calls": st.KMSUnwrapCalls, "cache_hits": st.CacheHits, "cache_misses": st.CacheMisses}
	if firstErr != nil && errors.Is(firstErr, reencrypt.ErrRowsFailed) {
		if integrity || sample == nil {
			return res, fmt.Errorf("%w: %d rows failed (listed by row id): %w", ErrIntegrity, res.Failed, firstErr)
		}
		return res, fmt.Errorf("%d rows failed (listed by row id): %w: %w", res.Failed, firstErr, sample)
	}
	return res, firstErr
}

// unconfiguredIndex returns the name of gormcrypt's default blind-index
// column of col (COLUMN_bidx) when the table has it but the configuration
// names no blind_index, else "".
func (o *Operator) unconfiguredIndex(ctx context.Context, col config.Column) string {
	if col.BlindIndex != "" || col.Deterministic() {
		return ""
	}
	idx := col.Column + "_bidx"
	if o.DB.WithContext(ctx).Migrator().HasColumn(col.Table, idx) {
		return idx
	}
	return ""
}

// ErrIntegrity marks an integrity failure an operation found: values that
// failed authentication or are malformed (kind fielderr.Authentication).
var ErrIntegrity = fielderr.New(fielderr.Authentication, "integrity check failed")

func round2(f float64) float64 { return float64(int64(f*100+0.5)) / 100 }
