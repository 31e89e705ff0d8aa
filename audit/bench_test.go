package audit_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/fieldcrypt/fieldcrypt/audit"
)

// BenchmarkChainRecord floods the log: events arrive faster than the
// flusher's interval, so once the queue is full the caller encodes and
// writes too. ns/op is the log's throughput bound per event (stamp, MAC,
// encode, write, fsync every flush), not the caller's usual cost (a
// queue append: see BenchmarkAuditChain in gormcrypt).
func BenchmarkChainRecord(b *testing.B) {
	e := newChainEnv(b)
	c, err := audit.OpenChain(context.Background(), audit.ChainOptions{Path: e.log, MasterKey: e.mk, Checkpoints: e.cps})
	if err != nil {
		b.Fatal(err)
	}
	ctx := audit.WithPurpose(audit.WithActor(context.Background(), audit.Person("support:jane")), "ticket 4711")
	ev := audit.Event{Type: audit.DecryptAccess, Class: "critical", Table: "patients", Column: "ssn", Row: "0b8e3c8e-6a52-4f8e-9a39-4c1f0e7d2a11", KEKVersion: 2}
	b.ReportAllocs()
	for b.Loop() {
		c.Record(ctx, ev)
	}
	b.StopTimer()
	if err := c.Close(); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkVerify reports how many records per second Verify checks.
func BenchmarkVerify(b *testing.B) {
	e := newChainEnv(b)
	c, err := audit.OpenChain(context.Background(), audit.ChainOptions{Path: e.log, MasterKey: e.mk, Checkpoints: e.cps, FlushInterval: time.Second})
	if err != nil {
		b.Fatal(err)
	}
	const n = 100000
	ctx := audit.WithPurpose(audit.WithActor(context.Background(), audit.Person("support:jane")), "ticket 4711")
	for i := range n {
		c.Record(ctx, audit.Event{Type: audit.DecryptAccess, Class: "critical", Table: "patients", Column: "ssn", Row: fmt.Sprint(i), KEKVersion: 2})
	}
	if err := c.Close(); err != nil {
		b.Fatal(err)
	}
	files, _ := audit.Files(e.log)
	cps, _ := e.cps.Checkpoints(context.Background())
	b.ResetTimer()
	start := time.Now()
	var records uint64
	for b.Loop() {
		res, err := audit.Verify(context.Background(), files, audit.VerifyOptions{MasterKeys: []string{e.mk.URI()}, Checkpoints: cps})
		if err != nil {
			b.Fatal(err)
		}
		records += res.Records
	}
	b.ReportMetric(float64(records)/time.Since(start).Seconds(), "records/s")
}
