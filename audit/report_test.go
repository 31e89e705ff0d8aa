package audit_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fieldcrypt/fieldcrypt/audit"
)

func access(seq uint64, at time.Time, actor audit.Actor, purpose, row string) audit.Entry {
	return audit.Entry{Log: "L", Seq: seq, Event: audit.Event{Type: audit.DecryptAccess, Outcome: audit.OK, Time: at,
		Actor: actor.Name, ActorKind: actor.Kind, Purpose: purpose, Class: "critical", Table: "patients", Column: "ssn", Row: row}}
}

func TestReport(t *testing.T) {
	day := time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)
	jane, bob, billing := audit.Person("support:jane"), audit.Person("support:bob"), audit.Service("billing")
	r := audit.NewReport(audit.ReportOptions{})
	seq := uint64(1)
	add := func(en audit.Entry) {
		en.Seq = seq
		seq++
		require.NoError(t, r.Add(en))
	}
	// Usual days: each person reads a few rows a day, with a purpose.
	for d := range 5 {
		for i := range 3 {
			add(access(0, day.AddDate(0, 0, d), jane, "ticket 1", fmt.Sprint("j", d, i)))
			add(access(0, day.AddDate(0, 0, d), bob, "ticket 2", fmt.Sprint("b", d, i)))
		}
	}
	// One unusual day: bob reads 40 rows, 5 without a purpose.
	for i := range 40 {
		p := "ticket 3"
		if i < 5 {
			p = ""
		}
		add(access(0, day.AddDate(0, 0, 6), bob, p, fmt.Sprint("x", i)))
	}
	add(access(0, day, billing, "", "7")) // a service needs no purpose
	f := access(0, day, jane, "ticket 1", "9")
	f.Event.Type, f.Event.Outcome, f.Event.Error = audit.DecryptFailed, audit.Error, "authentication failed"
	add(f)
	rf := access(0, day, jane, "", "")
	rf.Event.Type, rf.Event.Outcome = audit.DecryptRefused, audit.Error
	add(rf)
	anon := access(0, day, audit.Actor{Name: "app@host"}, "", "8")
	add(anon)
	r.Finish()

	assert.Equal(t, int64(30+40+2), r.Totals.Reads)
	assert.Equal(t, int64(1), r.Totals.Failed)
	assert.Equal(t, int64(1), r.Totals.Refused)
	kinds := map[string]audit.Finding{}
	for _, f := range r.Findings {
		kinds[f.Kind+" "+f.Actor] = f
	}
	require.Contains(t, kinds, "volume support:bob", "%+v", r.Findings)
	assert.Equal(t, int64(40), kinds["volume support:bob"].Count)
	assert.NotContains(t, kinds, "volume support:jane")
	assert.Equal(t, int64(5), kinds["no_purpose support:bob"].Count)
	assert.NotContains(t, kinds, "no_purpose billing", "services need no purpose")
	assert.Equal(t, int64(1), kinds["failed support:jane"].Count)
	assert.Equal(t, int64(1), kinds["refused support:jane"].Count)
	assert.Equal(t, int64(1), kinds["unattributed app@host"].Count)

	var bobLine audit.AccessLine
	for _, a := range r.Accesses {
		if a.Actor == "support:bob" {
			bobLine = a
		}
	}
	assert.Equal(t, int64(55), bobLine.Reads)
	assert.Equal(t, 55, bobLine.Rows)
	assert.Equal(t, []string{"ticket 2", "ticket 3"}, bobLine.Purposes)

	var text, csvOut bytes.Buffer
	require.NoError(t, r.WriteText(&text))
	assert.Contains(t, text.String(), "! volume")
	require.NoError(t, r.WriteCSV(&csvOut))
	rows, err := csv.NewReader(&csvOut).ReadAll()
	require.NoError(t, err)
	assert.Equal(t, audit.CSVHeader, rows[0])
	assert.Len(t, rows, 1+len(r.Records))
}

func TestReportFilters(t *testing.T) {
	day := time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)
	entries := []audit.Entry{
		access(1, day, audit.Person("a"), "p", "1"),
		access(2, day.Add(time.Hour), audit.Person("b"), "p", "2"),
		access(3, day.Add(2*time.Hour), audit.Person("a"), "p", "3"),
	}
	entries[2].Event.Table = "orders"
	tests := []struct {
		name string
		o    audit.ReportOptions
		want []uint64
	}{
		{"all", audit.ReportOptions{}, []uint64{1, 2, 3}},
		{"actor", audit.ReportOptions{Actor: "a"}, []uint64{1, 3}},
		{"table", audit.ReportOptions{Table: "orders"}, []uint64{3}},
		{"since", audit.ReportOptions{Since: day.Add(time.Hour)}, []uint64{2, 3}},
		{"until", audit.ReportOptions{Until: day.Add(time.Hour)}, []uint64{1}},
		{"row", audit.ReportOptions{Row: "2"}, []uint64{2}},
		{"class", audit.ReportOptions{Class: "high"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := audit.NewReport(tc.o)
			for _, e := range entries {
				require.NoError(t, r.Add(e))
			}
			var got []uint64
			for _, rec := range r.Finish().Records {
				got = append(got, rec.Seq)
			}
			assert.Equal(t, tc.want, got)
		})
	}
}

// TestReviewInTheChain reviews part of a chained log into the same log,
// and the next report shows exactly that part as reviewed.
func TestReviewInTheChain(t *testing.T) {
	e := newChainEnv(t)
	e.write(6) // rows 1..6, by support:jane
	c := e.open()
	c.Record(audit.WithActor(context.Background(), audit.Person("support:bob")), audit.Event{Type: audit.DecryptAccess, Table: "patients", Column: "ssn", Class: "critical", Row: "1"})
	require.NoError(t, c.Close())

	files := e.files()
	vo := audit.VerifyOptions{MasterKeys: []string{e.mk.URI()}}
	rep, _, err := audit.BuildReport(context.Background(), files, vo, audit.ReportOptions{Actor: "support:jane"})
	require.NoError(t, err)
	assert.Equal(t, int64(6), rep.Totals.Unreviewed)

	_, err = audit.MarkReviewed(context.Background(), audit.Discard, rep, audit.Service("bot"), "x")
	require.Error(t, err, "a service does not review")
	_, err = audit.MarkReviewed(context.Background(), audit.Discard, rep, audit.Person("auditor"), "")
	require.Error(t, err, "a review needs a note")

	c = e.open()
	evs, err := audit.MarkReviewed(context.Background(), c, rep, audit.Person("auditor:kim"), "fortnightly review: all tickets match")
	require.NoError(t, err)
	require.Len(t, evs, 1)
	assert.Equal(t, int64(6), evs[0].Counts["records"])
	require.NoError(t, c.Close())

	cps, err := e.cps.Checkpoints(context.Background())
	require.NoError(t, err)
	vo.Checkpoints = cps
	rep, _, err = audit.BuildReport(context.Background(), e.files(), vo, audit.ReportOptions{})
	require.NoError(t, err)
	assert.Equal(t, int64(6), rep.Totals.Reviewed)
	assert.Equal(t, int64(1), rep.Totals.Unreviewed, "bob's read was not in the reviewed selection")
	require.Len(t, rep.Reviews, 1)
	assert.Equal(t, "auditor:kim", rep.Reviews[0].Reviewer)
	for _, rec := range rep.Records {
		assert.Equal(t, rec.Actor == "support:jane", rec.Reviewed, "seq %d", rec.Seq)
	}
}
