package audit

import (
	"encoding/csv"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// WriteText writes the report for a person: totals, what stands out, who
// read what, and the reviews.
func (r *Report) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	p := func(format string, args ...any) { fmt.Fprintf(tw, format+"\n", args...) }
	span := "no accesses"
	if !r.First.IsZero() {
		span = r.First.UTC().Format(time.RFC3339) + " to " + r.Last.UTC().Format(time.RFC3339)
	}
	sel := r.Filter
	if sel == "" {
		sel = "everything"
	}
	p("Access report: %s (selection: %s)", span, sel)
	t := r.Totals
	p("  %d values decrypted, %d without a purpose, %d failed, %d refused; %d of %d accesses reviewed.",
		t.Reads, t.WithoutPurpose, t.Failed, t.Refused, t.Reviewed, t.Reviewed+t.Unreviewed)
	p("")
	if len(r.Findings) > 0 {
		p("Stands out:")
		for _, f := range r.Findings {
			p("  ! %s\t%s\t%s", f.Kind, f.Actor, f.Detail)
		}
		p("")
	}
	if len(r.Accesses) > 0 {
		p("Who read what:")
		p("  ACTOR\tKIND\tCOLUMN\tCLASS\tREADS\tROWS\tNO PURPOSE\tFAILED\tREFUSED\tFIRST\tLAST\tPURPOSES")
		for _, a := range r.Accesses {
			kind := string(a.ActorKind)
			if kind == "" {
				kind = "-"
			}
			p("  %s\t%s\t%s.%s\t%s\t%d\t%d\t%d\t%d\t%d\t%s\t%s\t%s", a.Actor, kind, a.Table, a.Column, a.Class, a.Reads, a.Rows,
				a.WithoutPurpose, a.Failed, a.Refused, a.First.UTC().Format(time.RFC3339), a.Last.UTC().Format(time.RFC3339),
				strings.Join(a.Purposes, "; "))
		}
		p("")
	}
	if len(r.Reviews) > 0 {
		p("Reviews:")
		for _, v := range r.Reviews {
			p("  %s\t%s\tlog %s records %d-%d (%d accesses)\t%s", v.At.UTC().Format(time.RFC3339), v.Reviewer, v.Log, v.FromSeq, v.ToSeq, v.Records, v.Note)
		}
	}
	return tw.Flush()
}

// CSVHeader is the header row WriteCSV writes: one row per access.
var CSVHeader = []string{"at", "log", "seq", "event", "outcome", "actor", "actor_kind", "purpose", "class", "tenant",
	"table", "column", "row", "kek_version", "error", "reviewed"}

// WriteCSV writes one row per access (CSVHeader). A cell that a
// spreadsheet would take for a formula is prefixed with a quote.
func (r *Report) WriteCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(CSVHeader); err != nil {
		return err
	}
	for _, a := range r.Records {
		kek := ""
		if a.KEK != 0 {
			kek = strconv.FormatUint(uint64(a.KEK), 10)
		}
		row := []string{a.At.UTC().Format(timeFormat), a.Log, strconv.FormatUint(a.Seq, 10), string(a.Event), a.Outcome,
			a.Actor, string(a.ActorKind), a.Purpose, a.Class, a.Tenant, a.Table, a.Column, a.Row, kek, a.Error,
			strconv.FormatBool(a.Reviewed)}
		for i, c := range row {
			if c != "" && strings.ContainsRune("=+-@\t\r", rune(c[0])) {
				row[i] = "'" + c
			}
		}
		if err := cw.Write(row); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}
