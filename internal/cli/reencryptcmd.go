package cli

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

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
			if workers < 1 || batch < 1 || rateLimit < 0 {
				return usageErrorf("--workers and --batch-size must be at least 1, --rate-limit at least 0")
			}
			progs := map[string]*progress{}
			opts := ops.ReencryptOptions{
				Options: reencrypt.Options{Mode: mode, Workers: workers, BatchSize: batch, ChunkSize: chunk, RateLimit: rateLimit, DryRun: dryRun, JobID: jobID},
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
					prog.Set(p.Done, map[string]any{"job_id": p.JobID, "changed": p.Changed, "failed": p.Failed, "conflicts": p.Conflicts, "rows_per_s": round2(p.Rate)})
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
	f.StringVar(&jobID, "job-id", "", "job id: processes with the same id share the work; a rerun resumes it (default MODE:TABLE.COLUMN)")
	return cmd
}

func printReencrypt(w io.Writer, res *ops.ReencryptResult) {
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
