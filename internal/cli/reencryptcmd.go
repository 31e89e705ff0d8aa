package cli

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"gorm.io/gorm"

	"github.com/fieldcrypt/fieldcrypt/config"
	"github.com/fieldcrypt/fieldcrypt/ops"
	"github.com/fieldcrypt/fieldcrypt/reencrypt"
)

func (a *app) reencryptCmd(existing bool) *cobra.Command {
	var (
		full, dryRun, all bool
		columns           []string
		workers, batch    int
		chunk             int
		rateLimit         float64
		jobID             string
		lease             time.Duration
		metricsAddr       string
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
			if _, err := a.serveMetrics(ctx, metricsAddr); err != nil {
				return err
			}
			op, err := a.operator(ctx, false)
			if err != nil {
				return err
			}
			cfg := op.Config
			var cols []config.Column
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
			switch {
			case workers < 1 || workers > 64:
				return usageErrorf("--workers %d: want 1 to 64", workers)
			case batch < 1 || batch > reencrypt.MaxBatchSize:
				return usageErrorf("--batch-size %d: want 1 to %d", batch, reencrypt.MaxBatchSize)
			case chunk < 0:
				return usageErrorf("--chunk-size %d: want a positive number of rows (0: the default)", chunk)
			case rateLimit < 0:
				return usageErrorf("--rate-limit %g: want at least 0 (0: unlimited)", rateLimit)
			case lease < time.Second: // a lease renewed across hosts and networks
				return usageErrorf("--lease %s: want at least 1s", lease)
			}
			progs := map[string]*progress{}
			opts := ops.ReencryptOptions{
				Options: reencrypt.Options{Mode: mode, Workers: workers, BatchSize: batch, ChunkSize: chunk, RateLimit: rateLimit, DryRun: dryRun, JobID: jobID, LeaseTTL: lease},
				ColumnProgress: func(col config.Column, p reencrypt.Progress) {
					prog := progs[col.Name()]
					if prog == nil {
						label := col.Name()
						if dryRun {
							label += " (dry run)"
						}
						total := p.Total
						if total <= 0 {
							total = -1
						}
						prog = a.newProgress(a.progressMode(true), label, total, false)
						progs[col.Name()] = prog
					}
					extra := map[string]any{"job_id": p.JobID, "changed": p.Changed, "failed": p.Failed, "conflicts": p.Conflicts, "rows_per_s": round2(p.Rate)}
					if w := p.WaitingFor(); w != "" {
						extra["waiting"] = w
						prog.Describe(col.Name() + ": " + w)
					} else {
						prog.Describe(col.Name())
					}
					prog.Set(p.Done, extra)
					if p.Final {
						prog.Finish(map[string]any{"job_id": p.JobID, "changed": p.Changed, "failed": p.Failed})
					}
				},
			}
			res, err := op.Reencrypt(ctx, cols, opts)
			if res != nil {
				if eerr := a.emit(res, func(w io.Writer) { printReencrypt(w, res) }); eerr != nil && err == nil {
					return eerr
				}
			}
			return err
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
	f.StringVar(&jobID, "job-id", "", "job id: processes with the same id share the work; a rerun resumes it (default MODE:TABLE.COLUMN); names one job: give exactly one --column with it")
	addMetricsFlag(cmd, &metricsAddr)
	a.addTenantLabelsFlag(cmd)
	f.DurationVar(&lease, "lease", reencrypt.DefaultLeaseTTL, "how long a worker holds a chunk without a heartbeat (heartbeats renew it every third of it): a stopped worker's chunks are taken over after it")
	if !existing {
		cmd.AddCommand(a.reencryptStatusCmd(), a.reencryptPruneCmd())
	}
	return cmd
}

func printReencrypt(w io.Writer, res *ops.ReencryptResult) {
	defer func() {
		if res.KMS != nil {
			fmt.Fprintf(w, "KMS calls: %d unwraps, %d wraps (KEK cache: %d hits, %d misses)\n", res.KMS["unwrap_calls"], res.KMS["wrap_calls"], res.KMS["cache_hits"], res.KMS["cache_misses"])
		}
		if am := res.AfterMigration; am != nil {
			// The one thing left: the old plaintexts are still in the
			// table's files and the database's logs.
			var cmds []string
			for _, c := range res.Columns {
				if c.Cleanup != "" && !slices.Contains(cmds, c.Cleanup) {
					cmds = append(cmds, c.Cleanup)
				}
			}
			fmt.Fprintf(w, "\nThe old plaintexts are still on disk (old row versions, %s logs). Once the migration is finished, run:\n", am.Database)
			for _, c := range cmds {
				fmt.Fprintf(w, "  %s\n", c)
			}
			fmt.Fprintf(w, "Then: %s. Runbook: docs/operations.md \"After a migration\".\n", am.Then)
		}
	}()
	verb := map[string]string{"rewrap": "rewrapped", "full": "re-encrypted", "encrypt-existing": "encrypted"}[res.Mode]
	if res.DryRun {
		verb = "would be " + verb
	}
	for _, c := range res.Columns {
		fmt.Fprintf(w, "%s.%s (%s, job %s): %d rows scanned, %d %s, %d already current, %d null",
			c.Table, c.Column, c.Class, c.JobID, c.Scanned, c.Changed, verb, c.Current, c.Null)
		if c.Indexed > 0 {
			verbIdx := "blind indexes written"
			if res.DryRun {
				verbIdx = "blind indexes would be written"
			}
			fmt.Fprintf(w, ", %d %s", c.Indexed, verbIdx)
		}
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

// openDB opens the configured database alone (no keyring, no KMS).
func (a *app) openDB(ctx context.Context) (*gorm.DB, error) {
	cfg, err := a.config(false)
	if err != nil {
		return nil, err
	}
	d, err := cfg.DSN()
	if err != nil {
		return nil, err
	}
	db, err := config.OpenDB(ctx, d)
	if err != nil {
		return nil, err
	}
	a.closers = append(a.closers, func() { config.CloseDB(db) })
	return db, nil
}

func (a *app) reencryptStatusCmd() *cobra.Command {
	var job string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show re-encryption jobs: chunks done, leased and pending, workers and their heartbeats, rows/s, ETA",
		Long: `status reads the job tables: every job (or --job ID), its table and column,
its chunks done, leased (by a worker whose lease runs) and pending, the
workers holding chunks with their last heartbeat (a worker that stopped
heartbeating, killed or cut off, is marked stopped: its chunks are taken
over when its lease expires), and the job's rows/s and ETA. It needs no key.`,
		Example: `  fieldcrypt reencrypt status
  fieldcrypt reencrypt status --job rotate-2026-11 -o json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			db, err := a.openDB(cmd.Context())
			if err != nil {
				return err
			}
			jobs, err := reencrypt.Status(cmd.Context(), db, job)
			if err != nil {
				return err
			}
			if jobs == nil {
				jobs = []reencrypt.JobStatus{}
			}
			return a.emit(jobs, func(w io.Writer) { printJobs(w, jobs) })
		},
	}
	cmd.Flags().StringVar(&job, "job", "", "only this job")
	return cmd
}

func printJobs(w io.Writer, jobs []reencrypt.JobStatus) {
	if len(jobs) == 0 {
		fmt.Fprintln(w, "no re-encryption jobs")
	}
	for _, j := range jobs {
		state := "running"
		if j.Finished != nil {
			state = "finished " + j.Finished.Format(time.RFC3339)
		}
		fmt.Fprintf(w, "%s  %s.%s  %s  %s\n", j.JobID, j.Table, j.Column, j.Mode, state)
		fmt.Fprintf(w, "  rows %d/%d (%d changed, %d failed)  chunks %d done, %d leased, %d pending of %d  %.1f rows/s",
			j.RowsDone, j.TotalRows, j.Changed, j.Failed, j.ChunksDone, j.ChunksLeased, j.ChunksPending, j.Chunks, j.RowsPerS)
		if j.ETAS > 0 {
			fmt.Fprintf(w, "  ETA %s", time.Duration(j.ETAS*float64(time.Second)).Round(time.Second))
		}
		fmt.Fprintln(w)
		for _, wk := range j.Workers {
			stopped := ""
			if wk.Stopped {
				stopped = fmt.Sprintf("  STOPPED: its chunks are taken over at %s", wk.LeaseUntil.Format(time.RFC3339))
			}
			fmt.Fprintf(w, "  worker %s: %d chunks, last heartbeat %s%s\n", wk.Owner, wk.Chunks, wk.LastHeartbeat.Format(time.RFC3339), stopped)
		}
	}
}

func (a *app) reencryptPruneCmd() *cobra.Command {
	var job string
	var olderThan time.Duration
	cmd := &cobra.Command{
		Use:   "prune",
		Short: "Delete finished re-encryption jobs from the job tables",
		Long: `prune deletes the rows of finished jobs (their job and chunk rows) that
finished more than --older-than ago (default 7 days; 0: all finished
jobs), or of the one job --job names, finished or not (its workers then
stop with a lost lease). Job rows hold key values of the processed
tables, never column values: pruning loses only the history.`,
		Example: `  fieldcrypt reencrypt prune
  fieldcrypt reencrypt prune --older-than 0s
  fieldcrypt reencrypt prune --job rotate-2026-11`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if olderThan < 0 {
				return usageErrorf("--older-than %s: want 0 or more", olderThan)
			}
			db, err := a.openDB(cmd.Context())
			if err != nil {
				return err
			}
			ids, err := reencrypt.Prune(cmd.Context(), db, olderThan, job)
			if err != nil {
				return err
			}
			if ids == nil {
				ids = []string{}
			}
			return a.emit(map[string][]string{"pruned": ids}, func(w io.Writer) {
				fmt.Fprintf(w, "pruned %d jobs %s\n", len(ids), strings.Join(ids, " "))
			})
		},
	}
	cmd.Flags().StringVar(&job, "job", "", "prune this job (finished or not)")
	cmd.Flags().DurationVar(&olderThan, "older-than", 7*24*time.Hour, "prune jobs finished longer ago than this")
	return cmd
}
