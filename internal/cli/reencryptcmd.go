package cli

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/fieldcrypt/fieldcrypt/audit"
	"github.com/fieldcrypt/fieldcrypt/envelope"
	"github.com/fieldcrypt/fieldcrypt/reencrypt"
)

type reencryptColumnResult struct {
	Table           string   `json:"table"`
	Column          string   `json:"column"`
	Class           string   `json:"class"`
	JobID           string   `json:"job_id"`
	Mode            string   `json:"mode"`
	DryRun          bool     `json:"dry_run"`
	Scanned         int64    `json:"scanned"`
	Changed         int64    `json:"changed"` // in a dry run: would change
	Current         int64    `json:"current"`
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
}

type reencryptResult struct {
	Mode    string                  `json:"mode"`
	DryRun  bool                    `json:"dry_run"`
	Columns []reencryptColumnResult `json:"columns"`
	Changed int64                   `json:"changed"`
	Failed  int64                   `json:"failed"`
	KMS     map[string]uint64       `json:"kms,omitempty"` // keyring counters: KMS calls scale with keys, not rows
}

// auditProgressEvery is how often a long job records reencrypt.progress.
const auditProgressEvery = time.Minute

func (a *app) reencryptCmd(existing bool) *cobra.Command {
	var (
		full, dryRun, all bool
		columns           []string
		workers, batch    int
		chunk             int
		rateLimit         float64
		jobID             string
	)
	name, short, long, example := "reencrypt", "Move encrypted values to the current keys (rewrap by default; --full re-encrypts)", `reencrypt moves the values of configured columns to the current primary KEK.

By default it rewraps: it replaces the wrapped data key and KEK version in
each ciphertext's header, never computing the plaintext. --full opens every
value and seals it again with a fresh data key (after a suspected data-key
exposure, or to move deterministic values to the newest search key).

It is online and resumable: rows are read in primary-key batches and each
write is a compare-and-swap on the value read, so concurrent application
writes are never overwritten; work is split into chunks leased through job
tables in the database, so several processes (--job-id) share one job and a
rerun after Ctrl-C or a crash resumes from the checkpoints. A row that fails
to open is reported by row id and the job goes on (exit 3 at the end).`, `  fieldcrypt reencrypt                     # every configured column
  fieldcrypt reencrypt --column patients.ssn --workers 4 --rate-limit 2000
  fieldcrypt reencrypt --column patients.ssn --full --dry-run
  fieldcrypt reencrypt --column patients.ssn --job-id rotate-2026-11 # run the same on several hosts`
	if existing {
		name, short, long, example = "encrypt-existing", "Encrypt the plaintext values of a column in place (migration)", `encrypt-existing encrypts, in place, the values of a configured column that are
still plaintext (a migration of an existing column to fieldcrypt), with the
column's configured class, mode, row binding and encoding. Values already
encrypted are left alone, so it can run while the application already
writes ciphertext. Online and resumable like reencrypt.

The column must be able to hold the ciphertext: a text column for the text
encoding (about 4/3 of the value plus ~80 bytes), a binary column otherwise.`, `  fieldcrypt encrypt-existing --column patients.ssn --dry-run
  fieldcrypt encrypt-existing --column patients.ssn --workers 2 --batch-size 200 --rate-limit 500`
	}
	cmd := &cobra.Command{
		Use:     name,
		Short:   short,
		Long:    long,
		Example: example,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			kr, err := a.keyring(ctx, false)
			if err != nil {
				return err
			}
			cfg := a.cfg
			var cols []ColumnConfig
			switch {
			case all && len(columns) > 0:
				return usageErrorf("give --column or --all, not both")
			case all || (len(columns) == 0 && !existing):
				cols = cfg.Columns
				if len(cols) == 0 {
					return usageErrorf("no columns configured: list them under 'columns:' in the config")
				}
			case len(columns) > 0:
				for _, c := range columns {
					col, err := cfg.Column(c)
					if err != nil {
						return err
					}
					cols = append(cols, col)
				}
			default: // encrypt-existing: a migration names its column explicitly
				return usageErrorf("give --column TABLE.COLUMN (repeatable) or --all")
			}
			if jobID != "" && len(cols) > 1 {
				return usageErrorf("--job-id names one job: give exactly one --column with it")
			}
			mode := reencrypt.Rewrap
			switch {
			case existing:
				mode = reencrypt.EncryptExisting
			case full:
				mode = reencrypt.Full
			}
			if workers < 1 || batch < 1 || rateLimit < 0 {
				return usageErrorf("--workers and --batch-size must be at least 1, --rate-limit at least 0")
			}
			db, err := a.openDB(ctx)
			if err != nil {
				return err
			}
			env := envelope.New(kr)
			res := reencryptResult{Mode: mode.String(), DryRun: dryRun, Columns: []reencryptColumnResult{}}
			var firstErr, failSample error
			failIntegrity := false
			for _, col := range cols {
				label := col.Name()
				if dryRun {
					label += " (dry run)"
				}
				prog := a.newProgress(a.progressMode(true), label, -1, false)
				started := false
				lastAudit := time.Now()
				opts := reencrypt.Options{
					Mode: mode, Workers: workers, BatchSize: batch, ChunkSize: chunk, RateLimit: rateLimit,
					DryRun: dryRun, JobID: jobID,
					Progress: func(p reencrypt.Progress) {
						if !started && prog.bar != nil && p.Total > 0 {
							prog.bar.ChangeMax64(p.Total)
							prog.total = p.Total
						} else if !started && p.Total > 0 {
							prog.total = p.Total
						}
						started = true
						prog.Set(p.Done, map[string]any{"job_id": p.JobID, "changed": p.Changed, "failed": p.Failed, "conflicts": p.Conflicts, "rows_per_s": round2(p.Rate)})
						if !p.Final && time.Since(lastAudit) >= auditProgressEvery {
							lastAudit = time.Now()
							a.record(ctx, audit.Event{Type: audit.ReencryptProgress, Class: col.Class, Table: col.Table, Column: col.Column, Job: p.JobID,
								Counts: map[string]int64{"done": p.Done, "total": p.Total, "changed": p.Changed, "failed": p.Failed}}, nil)
						}
					},
				}
				ev := audit.Event{Type: audit.ReencryptStarted, Class: col.Class, Table: col.Table, Column: col.Column, Job: jobID,
					Counts: map[string]int64{"workers": int64(workers)}}
				if dryRun {
					ev.Counts["dry_run"] = 1
				}
				a.record(ctx, ev, nil)
				sum, err := reencrypt.Run(ctx, db, env, col.engineColumn(cfg.Tenant), opts)
				prog.Finish(map[string]any{"job_id": sum.JobID, "changed": sum.Changed, "failed": sum.Failed})
				cr := reencryptColumnResult{
					Table: col.Table, Column: col.Column, Class: col.Class, JobID: sum.JobID, Mode: mode.String(), DryRun: dryRun,
					Scanned: sum.Scanned, Changed: sum.Changed, Current: sum.Current, Null: sum.Nulls, Plaintext: sum.Plaintext,
					Conflicts: sum.Conflicts, Vanished: sum.Vanished, Failed: sum.Failed, ChunksDone: sum.ChunksDone,
					ChunksTakenOver: sum.ChunksTakenOver, JobFinished: sum.JobFinished, DurationS: round2(sum.Duration.Seconds()),
				}
				for i, f := range sum.Failures {
					if i == maxFailedRows {
						break
					}
					cr.FailedRows = append(cr.FailedRows, f.Row)
				}
				for i, f := range sum.Failures {
					r := failReason(f.Err)
					if failSample == nil {
						failSample = f.Err
					}
					if r == failAuthentication || r == failMalformed {
						failIntegrity = true
					}
					if i >= maxFailEvents {
						continue
					}
					if r == failAuthentication || r == failMalformed {
						a.record(ctx, audit.Event{Type: audit.DecryptFailed, Class: col.Class, Table: col.Table, Column: col.Column, Row: f.Row, Job: sum.JobID, Error: r}, nil)
					}
				}
				if err != nil {
					cr.Error = a.redact(err.Error())
				}
				a.record(ctx, audit.Event{Type: audit.ReencryptFinished, Class: col.Class, Table: col.Table, Column: col.Column, Job: sum.JobID,
					Counts: map[string]int64{"scanned": sum.Scanned, "changed": sum.Changed, "failed": sum.Failed, "conflicts": sum.Conflicts, "dry_run": b2i(dryRun)}}, err)
				res.Columns = append(res.Columns, cr)
				res.Changed += sum.Changed
				res.Failed += sum.Failed
				if err != nil {
					if firstErr == nil {
						firstErr = err
					}
					// Rows that failed do not stop the other columns; anything
					// else (interrupt, KMS down, database gone) does.
					if !errors.Is(err, reencrypt.ErrRowsFailed) {
						break
					}
				}
			}
			st := kr.Stats()
			res.KMS = map[string]uint64{"wrap_calls": st.KMSWrapCalls, "unwrap_calls": st.KMSUnwrapCalls, "cache_hits": st.CacheHits, "cache_misses": st.CacheMisses}
			if err := a.emit(res, func(w io.Writer) { printReencrypt(w, res) }); err != nil {
				return err
			}
			if firstErr != nil {
				if errors.Is(firstErr, reencrypt.ErrRowsFailed) {
					return rowsFailedError(firstErr, res, failIntegrity, failSample)
				}
				return firstErr
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&columns, "column", nil, "TABLE.COLUMN from the config (repeatable)")
	if existing {
		f.BoolVar(&all, "all", false, "every configured column")
	} else {
		f.BoolVar(&all, "all", false, "every configured column (the default without --column)")
	}
	if !existing {
		f.BoolVar(&full, "full", false, "re-encrypt with fresh data keys instead of rewrapping")
	}
	f.BoolVar(&dryRun, "dry-run", false, "count what would change; write nothing (not even job tables)")
	f.IntVar(&workers, "workers", 1, "concurrent workers in this process")
	f.IntVar(&batch, "batch-size", 500, "rows read and swapped per statement (at most 5000)")
	f.IntVar(&chunk, "chunk-size", 0, "rows per leased chunk, fixed when a job is planned (default 10000)")
	f.Float64Var(&rateLimit, "rate-limit", 0, "rows per second for this process (0: unlimited)")
	f.StringVar(&jobID, "job-id", "", "job id: processes with the same id share the work; a rerun resumes it (default MODE:TABLE.COLUMN)")
	return cmd
}

// rowsFailedError classifies a run whose rows failed: integrity (exit 3)
// when values failed authentication or are malformed, else by the first
// failure (exit 4 when their keys are destroyed, retired or unknown).
func rowsFailedError(err error, res reencryptResult, integrity bool, sample error) error {
	if integrity || sample == nil {
		return fmt.Errorf("%w: %d rows failed (listed by row id): %w", errIntegrity, res.Failed, err)
	}
	return fmt.Errorf("%d rows failed (listed by row id): %w: %w", res.Failed, err, sample)
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

func printReencrypt(w io.Writer, res reencryptResult) {
	defer func() {
		if res.KMS != nil {
			fmt.Fprintf(w, "KMS calls: %d unwraps, %d wraps (KEK cache: %d hits, %d misses)\n", res.KMS["unwrap_calls"], res.KMS["wrap_calls"], res.KMS["cache_hits"], res.KMS["cache_misses"])
		}
	}()
	verb := map[string]string{"rewrap": "rewrapped", "full": "re-encrypted", "encrypt-existing": "encrypted"}[res.Mode]
	if res.DryRun {
		verb = "would be " + verb
	}
	for _, c := range res.Columns {
		fmt.Fprintf(w, "%s.%s (%s, job %s): %d rows scanned, %d %s, %d already current, %d null",
			c.Table, c.Column, c.Class, c.JobID, c.Scanned, c.Changed, verb, c.Current, c.Null)
		if c.Plaintext > 0 {
			fmt.Fprintf(w, ", %d plaintext left alone (run encrypt-existing)", c.Plaintext)
		}
		if c.Conflicts > 0 {
			fmt.Fprintf(w, ", %d concurrent-write conflicts retried", c.Conflicts)
		}
		fmt.Fprintf(w, " in %s\n", time.Duration(c.DurationS*float64(time.Second)).Round(10*time.Millisecond))
		if c.Failed > 0 {
			fmt.Fprintf(w, "  %d rows FAILED: %s\n", c.Failed, strings.Join(c.FailedRows, ", "))
		}
		if c.Error != "" && c.Failed == 0 {
			fmt.Fprintf(w, "  stopped: %s\n", c.Error)
		} else if !c.JobFinished && !c.DryRun {
			fmt.Fprintln(w, "  job not finished: run the same command again to resume")
		}
	}
}
