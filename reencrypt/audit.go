package reencrypt

import (
	"context"
	"time"

	"github.com/fieldcrypt/fieldcrypt/audit"
	"github.com/fieldcrypt/fieldcrypt/fielderr"
)

// auditProgressEvery is how often a long run records reencrypt.progress.
const auditProgressEvery = time.Minute

// maxFailEvents bounds the decrypt.failed events of one run.
const maxFailEvents = 100

// recorder records a run's audit events: reencrypt.started, .progress
// (every auditProgressEvery), .finished, and decrypt.failed for rows whose
// values failed authentication or are malformed.
type recorder struct {
	sink      audit.Sink
	col       Column
	opts      Options
	lastAudit time.Time
}

func (r *recorder) event(typ audit.Type, job string, counts map[string]int64) audit.Event {
	return audit.Event{Type: typ, Class: r.col.Class.String(), Table: r.col.Table, Column: r.col.Column, Job: job, Counts: counts}
}

func (r *recorder) record(ctx context.Context, e audit.Event, err error) {
	if r.sink == nil {
		return
	}
	if err != nil {
		e.Outcome, e.Error = audit.Error, err.Error()
	}
	r.sink.Record(context.WithoutCancel(ctx), e)
}

func (r *recorder) started(ctx context.Context, explicitJob string) {
	r.lastAudit = time.Now()
	counts := map[string]int64{"workers": int64(r.opts.Workers)}
	if r.opts.DryRun {
		counts["dry_run"] = 1
	}
	r.record(ctx, r.event(audit.ReencryptStarted, explicitJob, counts), nil)
}

// progress wraps a Progress callback so that it also records progress.
func (r *recorder) progress(ctx context.Context, next func(Progress)) func(Progress) {
	if r.sink == nil {
		return next
	}
	return func(p Progress) {
		if next != nil {
			next(p)
		}
		if !p.Final && time.Since(r.lastAudit) >= auditProgressEvery {
			r.lastAudit = time.Now()
			r.record(ctx, r.event(audit.ReencryptProgress, p.JobID, map[string]int64{"done": p.Done, "total": p.Total, "changed": p.Changed, "failed": p.Failed}), nil)
		}
	}
}

func (r *recorder) finished(ctx context.Context, sum Summary, err error) {
	for i, f := range sum.Failures {
		if i >= maxFailEvents {
			break
		}
		if reason := integrityReason(f.Err); reason != "" {
			e := r.event(audit.DecryptFailed, sum.JobID, nil)
			e.Row, e.Error = f.Row, reason
			r.record(ctx, e, nil)
		}
	}
	var dry int64
	if sum.DryRun {
		dry = 1
	}
	r.record(ctx, r.event(audit.ReencryptFinished, sum.JobID, map[string]int64{
		"scanned": sum.Scanned, "changed": sum.Changed, "failed": sum.Failed, "conflicts": sum.Conflicts, "dry_run": dry}), err)
}

// integrityReason is "authentication" or "malformed" for a failure that
// suggests tampering or corruption, else "".
func integrityReason(err error) string {
	switch fielderr.KindOf(err) {
	case fielderr.Authentication:
		return fielderr.Authentication.String()
	case fielderr.Malformed, fielderr.Unsupported:
		return fielderr.Malformed.String()
	}
	return ""
}
