package audit

import (
	"context"
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/fieldcrypt/fieldcrypt/fielderr"
)

// ReportOptions select the events a report covers. Zero fields select
// everything.
type ReportOptions struct {
	Since, Until time.Time // Since inclusive, Until exclusive
	Actor        string    // actor name
	Table        string
	Class        string
	Row          string // one row's activity (a customer's activity log)
	// VolumeFactor and MinVolume tune when an actor's day stands out: it
	// read more than VolumeFactor times the median rows per actor and day
	// of the report (default 3), and at least MinVolume rows (default 20).
	VolumeFactor float64
	MinVolume    int
}

// filter is the options' selection as a review records it.
func (o ReportOptions) filter() string {
	v := url.Values{}
	set := func(k, s string) {
		if s != "" {
			v.Set(k, s)
		}
	}
	set("actor", o.Actor)
	set("table", o.Table)
	set("class", o.Class)
	set("row", o.Row)
	if !o.Since.IsZero() {
		v.Set("since", o.Since.UTC().Format(time.RFC3339))
	}
	if !o.Until.IsZero() {
		v.Set("until", o.Until.UTC().Format(time.RFC3339))
	}
	return v.Encode()
}

// parseFilter reads what filter wrote; a filter it cannot read selects
// nothing.
func parseFilter(s string) (ReportOptions, bool) {
	v, err := url.ParseQuery(s)
	if err != nil {
		return ReportOptions{}, false
	}
	o := ReportOptions{Actor: v.Get("actor"), Table: v.Get("table"), Class: v.Get("class"), Row: v.Get("row")}
	for k, dst := range map[string]*time.Time{"since": &o.Since, "until": &o.Until} {
		if t := v.Get(k); t != "" {
			if *dst, err = time.Parse(time.RFC3339, t); err != nil {
				return ReportOptions{}, false
			}
		}
	}
	return o, true
}

// selects reports whether the options select an access event.
func (o ReportOptions) selects(e *Event) bool {
	return (o.Since.IsZero() || !e.Time.Before(o.Since)) && (o.Until.IsZero() || e.Time.Before(o.Until)) &&
		(o.Actor == "" || e.Actor == o.Actor) && (o.Table == "" || e.Table == o.Table) &&
		(o.Class == "" || e.Class == o.Class) && (o.Row == "" || e.Row == o.Row)
}

// isAccess reports whether an event is a read of protected data: a value
// decrypted, failing to decrypt, or a read refused.
func isAccess(t Type) bool { return t == DecryptAccess || t == DecryptFailed || t == DecryptRefused }

// AccessRecord is one read of protected data.
type AccessRecord struct {
	At        time.Time `json:"at"`
	Log       string    `json:"log"`
	Seq       uint64    `json:"seq"`
	Event     Type      `json:"event"`
	Outcome   string    `json:"outcome"`
	Actor     string    `json:"actor"`
	ActorKind ActorKind `json:"actor_kind,omitempty"`
	Purpose   string    `json:"purpose,omitempty"`
	Class     string    `json:"class,omitempty"`
	Tenant    string    `json:"tenant,omitempty"`
	Table     string    `json:"table,omitempty"`
	Column    string    `json:"column,omitempty"`
	Row       string    `json:"row,omitempty"`
	KEK       uint32    `json:"kek_version,omitempty"`
	Error     string    `json:"error,omitempty"`
	Reviewed  bool      `json:"reviewed"`
}

// AccessLine sums up one actor's reads of one column.
type AccessLine struct {
	Actor          string    `json:"actor"`
	ActorKind      ActorKind `json:"actor_kind,omitempty"`
	Table          string    `json:"table"`
	Column         string    `json:"column"`
	Class          string    `json:"class"`
	Reads          int64     `json:"reads"`
	Rows           int       `json:"rows"` // distinct rows read
	Failed         int64     `json:"failed"`
	Refused        int64     `json:"refused"`
	WithoutPurpose int64     `json:"without_purpose"`
	Purposes       []string  `json:"purposes"` // distinct, at most 10
	First          time.Time `json:"first"`
	Last           time.Time `json:"last"`
}

// Finding is something a reviewer should look at.
type Finding struct {
	Kind   string `json:"kind"` // volume, no_purpose, unattributed, failed, refused
	Actor  string `json:"actor"`
	Day    string `json:"day,omitempty"` // volume: the UTC day
	Count  int64  `json:"count"`
	Detail string `json:"detail"`
}

// Finding kinds.
const (
	FindingVolume       = "volume"       // an actor read far more rows in a day than usual
	FindingNoPurpose    = "no_purpose"   // a person read without stating why
	FindingUnattributed = "unattributed" // reads no actor was set for (the application did not call WithActor)
	FindingFailed       = "failed"       // values failed to decrypt: possible tampering
	FindingRefused      = "refused"      // reads refused (no purpose)
)

// ReviewLine is one audit.reviewed event.
type ReviewLine struct {
	At       time.Time `json:"at"`
	Reviewer string    `json:"reviewer"`
	Note     string    `json:"note"`
	Filter   string    `json:"filter,omitempty"`
	Log      string    `json:"log"`
	FromSeq  uint64    `json:"from_seq"`
	ToSeq    uint64    `json:"to_seq"`
	Records  int64     `json:"records"`
}

// ReportTotals count the report's accesses.
type ReportTotals struct {
	Reads          int64 `json:"reads"`
	Failed         int64 `json:"failed"`
	Refused        int64 `json:"refused"`
	WithoutPurpose int64 `json:"without_purpose"`
	Reviewed       int64 `json:"reviewed"`
	Unreviewed     int64 `json:"unreviewed"`
}

// Report says who read what, when, why and how often, and what stands
// out. Build it with NewReport, Add every verified entry (Verify's Visit)
// and Finish.
type Report struct {
	Options  ReportOptions  `json:"-"`
	Filter   string         `json:"filter,omitempty"`
	First    time.Time      `json:"first,omitempty"`
	Last     time.Time      `json:"last,omitempty"`
	Totals   ReportTotals   `json:"totals"`
	Accesses []AccessLine   `json:"accesses"`
	Findings []Finding      `json:"findings"`
	Reviews  []ReviewLine   `json:"reviews"`
	Records  []AccessRecord `json:"records"`
	// Ranges are the first and last sequence numbers of the selected
	// accesses per log: what a review of this report covers.
	Ranges map[string][2]uint64 `json:"-"`

	lines   map[lineKey]*lineAcc
	reviews []reviewCover
}

type lineKey struct{ actor, table, column, class string }

type lineAcc struct {
	AccessLine
	rows     map[string]struct{}
	purposes map[string]struct{}
}

type reviewCover struct {
	log      string
	from, to uint64
	filter   ReportOptions
}

// NewReport starts a report.
func NewReport(o ReportOptions) *Report {
	if o.VolumeFactor <= 0 {
		o.VolumeFactor = 3
	}
	if o.MinVolume <= 0 {
		o.MinVolume = 20
	}
	return &Report{Options: o, Filter: o.filter(), Accesses: []AccessLine{}, Findings: []Finding{}, Reviews: []ReviewLine{},
		Records: []AccessRecord{}, Ranges: map[string][2]uint64{}, lines: map[lineKey]*lineAcc{}}
}

// Add takes one entry of a verified log.
func (r *Report) Add(en Entry) error {
	e := &en.Event
	if e.Type == AuditReviewed {
		r.addReview(en)
		return nil
	}
	if !isAccess(e.Type) || !r.Options.selects(e) {
		return nil
	}
	rec := AccessRecord{At: e.Time, Log: en.Log, Seq: en.Seq, Event: e.Type, Outcome: e.Outcome, Actor: e.Actor,
		ActorKind: e.ActorKind, Purpose: e.Purpose, Class: e.Class, Tenant: e.Tenant, Table: e.Table, Column: e.Column,
		Row: e.Row, KEK: e.KEKVersion, Error: e.Error}
	r.Records = append(r.Records, rec)
	if rg, ok := r.Ranges[en.Log]; !ok {
		r.Ranges[en.Log] = [2]uint64{en.Seq, en.Seq}
	} else {
		r.Ranges[en.Log] = [2]uint64{min(rg[0], en.Seq), max(rg[1], en.Seq)}
	}
	if r.First.IsZero() || e.Time.Before(r.First) {
		r.First = e.Time
	}
	if e.Time.After(r.Last) {
		r.Last = e.Time
	}
	k := lineKey{e.Actor, e.Table, e.Column, e.Class}
	l := r.lines[k]
	if l == nil {
		l = &lineAcc{AccessLine: AccessLine{Actor: e.Actor, ActorKind: e.ActorKind, Table: e.Table, Column: e.Column, Class: e.Class,
			First: e.Time, Last: e.Time, Purposes: []string{}}, rows: map[string]struct{}{}, purposes: map[string]struct{}{}}
		r.lines[k] = l
	}
	l.First, l.Last = minTime(l.First, e.Time), maxTime(l.Last, e.Time)
	switch e.Type {
	case DecryptAccess:
		l.Reads++
		r.Totals.Reads++
		if e.Row != "" {
			l.rows[e.Row] = struct{}{}
		}
		if e.Purpose == "" {
			l.WithoutPurpose++
			r.Totals.WithoutPurpose++
		}
	case DecryptFailed:
		l.Failed++
		r.Totals.Failed++
	case DecryptRefused:
		l.Refused++
		r.Totals.Refused++
	}
	if e.Purpose != "" {
		l.purposes[e.Purpose] = struct{}{}
	}
	return nil
}

func (r *Report) addReview(en Entry) {
	e := &en.Event
	c := reviewCover{log: e.Job, from: uint64(e.Counts["from_seq"]), to: uint64(e.Counts["to_seq"])}
	f, ok := parseFilter(e.Filter)
	if ok && c.log != "" {
		c.filter = f
		r.reviews = append(r.reviews, c)
	}
	r.Reviews = append(r.Reviews, ReviewLine{At: e.Time, Reviewer: e.Actor, Note: e.Note, Filter: e.Filter, Log: e.Job,
		FromSeq: c.from, ToSeq: c.to, Records: e.Counts["records"]})
}

// Finish computes the summaries, the reviewed flags and the findings.
func (r *Report) Finish() *Report {
	for i := range r.Records {
		rec := &r.Records[i]
		ev := Event{Time: rec.At, Actor: rec.Actor, Table: rec.Table, Class: rec.Class, Row: rec.Row}
		for _, c := range r.reviews {
			if c.log == rec.Log && c.from <= rec.Seq && rec.Seq <= c.to && c.filter.selects(&ev) {
				rec.Reviewed = true
				break
			}
		}
		if rec.Reviewed {
			r.Totals.Reviewed++
		} else {
			r.Totals.Unreviewed++
		}
	}
	r.Accesses = r.Accesses[:0]
	for _, l := range r.lines {
		l.Rows = len(l.rows)
		l.Purposes = l.Purposes[:0]
		for p := range l.purposes {
			l.Purposes = append(l.Purposes, p)
		}
		sort.Strings(l.Purposes)
		if len(l.Purposes) > 10 {
			l.Purposes = l.Purposes[:10]
		}
		r.Accesses = append(r.Accesses, l.AccessLine)
	}
	sort.Slice(r.Accesses, func(i, j int) bool {
		a, b := r.Accesses[i], r.Accesses[j]
		if a.Actor != b.Actor {
			return a.Actor < b.Actor
		}
		if a.Table != b.Table {
			return a.Table < b.Table
		}
		return a.Column < b.Column
	})
	r.Findings = append(r.Findings[:0], r.volumeFindings()...)
	r.Findings = append(r.Findings, r.actorFindings()...)
	return r
}

// volumeFindings flags actor-days well above the median actor-day.
func (r *Report) volumeFindings() []Finding {
	type dayKey struct{ actor, day string }
	rows := map[dayKey]map[string]struct{}{}
	for _, rec := range r.Records {
		if rec.Event != DecryptAccess {
			continue
		}
		k := dayKey{rec.Actor, rec.At.UTC().Format(time.DateOnly)}
		if rows[k] == nil {
			rows[k] = map[string]struct{}{}
		}
		rows[k][rec.Table+"\x00"+rec.Column+"\x00"+rec.Row] = struct{}{}
	}
	if len(rows) == 0 {
		return nil
	}
	counts := make([]int, 0, len(rows))
	for _, m := range rows {
		counts = append(counts, len(m))
	}
	sort.Ints(counts)
	median := float64(counts[len(counts)/2])
	if len(counts)%2 == 0 {
		median = float64(counts[len(counts)/2-1]+counts[len(counts)/2]) / 2
	}
	var out []Finding
	for k, m := range rows {
		if n := len(m); n >= r.Options.MinVolume && float64(n) > r.Options.VolumeFactor*median {
			out = append(out, Finding{Kind: FindingVolume, Actor: k.actor, Day: k.day, Count: int64(n),
				Detail: fmt.Sprintf("read %d values on %s, %.1fx the median of %s per actor and day", n, k.day, float64(n)/median, strconv.FormatFloat(median, 'f', -1, 64))})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Count > out[j].Count })
	return out
}

// actorFindings flags, per actor, reads without purpose by a person,
// unattributed reads, failures and refusals.
func (r *Report) actorFindings() []Finding {
	type acc struct {
		kind                                     ActorKind
		noPurpose, unattributed, failed, refused int64
	}
	by := map[string]*acc{}
	var actors []string
	for _, rec := range r.Records {
		a := by[rec.Actor]
		if a == nil {
			a = &acc{kind: rec.ActorKind}
			by[rec.Actor] = a
			actors = append(actors, rec.Actor)
		}
		switch rec.Event {
		case DecryptAccess:
			if rec.ActorKind == KindPerson && rec.Purpose == "" {
				a.noPurpose++
			}
			if rec.ActorKind == "" {
				a.unattributed++
			}
		case DecryptFailed:
			a.failed++
		case DecryptRefused:
			a.refused++
		}
	}
	sort.Strings(actors)
	var out []Finding
	for _, name := range actors {
		a := by[name]
		add := func(kind string, n int64, detail string) {
			if n > 0 {
				out = append(out, Finding{Kind: kind, Actor: name, Count: n, Detail: fmt.Sprintf(detail, n)})
			}
		}
		add(FindingNoPurpose, a.noPurpose, "%d reads by a person without a stated purpose")
		add(FindingUnattributed, a.unattributed, "%d reads without an actor set by the application (recorded as the process)")
		add(FindingFailed, a.failed, "%d values failed to decrypt: possible tampering")
		add(FindingRefused, a.refused, "%d reads refused for want of a purpose")
	}
	return out
}

// ErrNothingToReview means a review selected no access.
var ErrNothingToReview = fielderr.New(fielderr.NotFound, "audit: no access in the selection to review")

// ErrInvalidReview means a review lacks its reviewer (a person) or note.
var ErrInvalidReview = fielderr.New(fielderr.InvalidInput, "audit: invalid review")

// MarkReviewed records in sink that reviewer looked at the report's
// accesses: one audit.reviewed event per log, naming the log (job), the
// first and last sequence numbers covered (counts.from_seq, to_seq), how
// many accesses (counts.records), the selection (filter) and the note.
// Recorded into the chained log, a later report shows every access a
// review covers as reviewed. The reviewer must be a person and the note
// must not be empty.
func MarkReviewed(ctx context.Context, sink Sink, r *Report, reviewer Actor, note string) ([]Event, error) {
	if !reviewer.IsPerson() || reviewer.Name == "" {
		return nil, fmt.Errorf("%w: a review is made by a person: name the reviewer", ErrInvalidReview)
	}
	if strings.TrimSpace(note) == "" {
		return nil, fmt.Errorf("%w: a review needs a note (what was checked, what was found)", ErrInvalidReview)
	}
	if len(r.Ranges) == 0 {
		return nil, ErrNothingToReview
	}
	if err := SinkErr(sink); err != nil {
		return nil, fmt.Errorf("audit: the review cannot be recorded: %w", err)
	}
	logs := make([]string, 0, len(r.Ranges))
	for l := range r.Ranges {
		logs = append(logs, l)
	}
	sort.Strings(logs)
	n := map[string]int64{}
	for _, rec := range r.Records {
		n[rec.Log]++
	}
	var out []Event
	for _, l := range logs {
		rg := r.Ranges[l]
		e := Event{Type: AuditReviewed, Actor: reviewer.Name, ActorKind: reviewer.Kind, Note: note, Filter: r.Filter, Job: l,
			Counts: map[string]int64{"from_seq": int64(rg[0]), "to_seq": int64(rg[1]), "records": n[l]}}
		e = FillContext(ctx, e)
		sink.Record(ctx, e)
		out = append(out, e)
	}
	return out, SinkErr(sink)
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// BuildReport verifies the log files (see Verify) and reports on their
// events. A log that fails verification gives no report: the error wraps
// ErrTampered and names the first bad record.
func BuildReport(ctx context.Context, files []string, vo VerifyOptions, ro ReportOptions) (*Report, *VerifyResult, error) {
	r := NewReport(ro)
	visit := vo.Visit
	vo.Visit = func(en Entry) error {
		if visit != nil {
			if err := visit(en); err != nil {
				return err
			}
		}
		return r.Add(en)
	}
	res, err := Verify(ctx, files, vo)
	if err != nil {
		return nil, res, err
	}
	return r.Finish(), res, nil
}
