package cli

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/fieldcrypt/fieldcrypt/config"
	"github.com/fieldcrypt/fieldcrypt/ops"
)

func (a *app) keysCensusCmd() *cobra.Command {
	var class string
	var columns []string
	var headersOnly bool
	var batch int
	cmd := &cobra.Command{
		Use:   "census",
		Short: "Count values per (class, KEK version), plaintext values and values that fail to open",
		Long: `census scans the configured columns (read-only, in batches by primary key) and
counts, per column and overall: values per class and KEK version, values
still in plaintext, encrypted values whose blind index (blind_index) is
missing, and values that fail to open, by reason
(authentication, malformed: integrity; key_destroyed, key_retired,
key_unknown: keys). By default it opens every value;
--headers-only only reads ciphertext headers (faster, no KMS use).

Exit code 3 when any value fails authentication or is malformed (each such
row is also an audit event decrypt.failed, up to 100 per run).`,
		Example: `  fieldcrypt keys census
  fieldcrypt keys census --class critical -o json
  fieldcrypt keys census --column patients.ssn --headers-only`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			op, err := a.operator(ctx, false)
			if err != nil {
				return err
			}
			opt := ops.CensusOptions{Verify: !headersOnly, BatchSize: batch, Columns: columns}
			if class != "" {
				if opt.Class, err = parseEncryptedClass(class); err != nil {
					return err
				}
			}
			if len(op.Config.Columns) == 0 {
				return usageErrorf("no columns configured: list the encrypted columns under 'columns:' in %s", orDefault(op.Config.Path, config.DefaultFile))
			}
			res, err := op.Census(ctx, opt)
			if err != nil {
				return err
			}
			if err := a.emit(res, func(w io.Writer) { printCensus(w, res) }); err != nil {
				return err
			}
			if n := res.IntegrityFailures(); n > 0 {
				return fmt.Errorf("%w: %d values failed authentication or are malformed", errIntegrity, n)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&class, "class", "", "only columns of this class")
	cmd.Flags().StringArrayVar(&columns, "column", nil, "only this TABLE.COLUMN (repeatable)")
	cmd.Flags().BoolVar(&headersOnly, "headers-only", false, "read headers only; do not open values")
	cmd.Flags().IntVar(&batch, "batch-size", 1000, "rows per query")
	return cmd
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

func printCensus(w io.Writer, res *ops.CensusResult) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "COLUMN\tCLASS\tROWS\tPLAINTEXT\tNULL\tKEK VERSIONS\tFAILED")
	for _, c := range res.Columns {
		var vs []string
		for _, v := range c.Versions {
			vs = append(vs, fmt.Sprintf("%s=%d", v.Name(), v.Count))
		}
		var fs []string
		for _, r := range ops.FailureReasons {
			if n := c.Failed[r]; n > 0 {
				fs = append(fs, fmt.Sprintf("%s=%d", r, n))
			}
		}
		fmt.Fprintf(tw, "%s.%s\t%s\t%d\t%d\t%d\t%s\t%s\n", c.Table, c.Column, c.Class, c.Rows, c.Plaintext, c.Null, dash(strings.Join(vs, " ")), dash(strings.Join(fs, " ")))
	}
	tw.Flush()
	fmt.Fprintf(w, "\nTotal: %d encrypted, %d plaintext", res.Encrypted, res.Plaintext)
	if res.MissingIndex > 0 {
		fmt.Fprintf(w, ", %d without their blind index", res.MissingIndex)
	}
	if n := res.TotalFailed(); n > 0 {
		fmt.Fprintf(w, ", %d failed to open", n)
	}
	fmt.Fprintln(w)
	for _, c := range res.Columns {
		if c.UnconfiguredIndex != "" {
			fmt.Fprintf(w, "  %s.%s: the table has %s (a gormcrypt blind index) but the configuration names no blind_index: its missing indexes are not counted; add blind_index: %s\n",
				c.Table, c.Column, c.UnconfiguredIndex, c.UnconfiguredIndex)
		}
		for _, idx := range sortedKeys(c.MissingIndex) {
			if n := c.MissingIndex[idx]; n > 0 {
				fmt.Fprintf(w, "  %s.%s: %d encrypted values have no blind index in %s: equality search does not find them and a unique index does not cover them; run 'fieldcrypt encrypt-existing --column %s.%s' (or gormcrypt.RebuildBlindIndexes)\n",
					c.Table, c.Column, n, idx, c.Table, c.Column)
			}
		}
	}
	for _, v := range res.Versions {
		name := v.Name()
		if v.Suite == "deterministic" { // under a search key: tell it from the randomized values of the same version
			name += " (deterministic)"
		}
		fmt.Fprintf(w, "  %-40s %d values\n", name, v.Count)
	}
	if !res.Verified {
		fmt.Fprintln(w, "(headers only: values were not opened)")
	}
}

func sortedKeys(m map[string]int64) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
