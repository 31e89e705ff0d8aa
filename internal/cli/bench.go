package cli

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/fieldcrypt/fieldcrypt/ops"
)

func (a *app) benchCmd() *cobra.Command {
	var dur time.Duration
	var streamMiB int
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure field and stream encryption on this machine against raw AES-256-GCM",
		Long: `bench measures, on this machine, like 'cryptsetup benchmark': field seal and
open (64 B, 1 KiB) through a keyring with a local master key (KEKs cached,
as in a running application), rewrap, blind index, and backup stream
encryption and decryption. Each is shown beside raw AES-256-GCM (one fixed
key, random nonce) measured in the same run, with the ratio of the two.
It needs no configuration and touches no database (keys live in a temp dir).`,
		Example: `  fieldcrypt bench
  fieldcrypt bench --duration 3s
  fieldcrypt bench -o json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if dur <= 0 {
				return usageErrorf("--duration must be positive")
			}
			if streamMiB < 1 {
				return usageErrorf("--stream-size must be at least 1 (MiB)")
			}
			res, err := ops.Bench(ctx, dur, streamMiB<<20, func(name string) {
				if !a.jsonOut() && !a.noProgress {
					a.note("measuring %s ...", name)
				}
			})
			if err != nil {
				return err
			}
			return a.emit(res, func(w io.Writer) {
				fmt.Fprintf(w, "# fieldcrypt bench: %s %s/%s, %d CPUs, %v per test\n", res.GoVersion, res.GOOS, res.GOARCH, res.CPUs, dur)
				tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
				fmt.Fprintln(tw, "test\tns/op\tMB/s\tbaseline\tns/op\tMB/s\tratio\t")
				for _, r := range res.Results {
					fmt.Fprintf(tw, "%s\t%.0f\t%.1f\t%s\t%.0f\t%.1f\t%.2fx\t\n", r.Name, r.NsPerOp, r.MBPerS, r.Baseline, r.BaselineNsPerOp, r.BaselineMBPerS, r.RatioToBaseline)
				}
				tw.Flush()
				fmt.Fprintln(w, "ratio = ns/op of the test / ns/op of raw AES-256-GCM on the same input (lower is better)")
			})
		},
	}
	cmd.Flags().DurationVar(&dur, "duration", time.Second, "time spent on each test (and on each baseline)")
	cmd.Flags().IntVar(&streamMiB, "stream-size", 8, "MiB per stream encryption op")
	return cmd
}
