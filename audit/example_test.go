package audit_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"

	"github.com/fieldcrypt/fieldcrypt/audit"
	"github.com/fieldcrypt/fieldcrypt/keyring/kms/localkms"
)

// A web handler names the person behind each request and why they read;
// every event recorded on the request's context carries both.
func ExampleWithActor() {
	events := &audit.Memory{}
	withAccess := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ctx := audit.WithActor(r.Context(), audit.Person(r.Header.Get("X-Agent"))) // from your authentication
			ctx = audit.WithPurpose(ctx, r.URL.Query().Get("ticket"))
			next.ServeHTTP(w, r.WithContext(ctx))
		})
	}
	handler := withAccess(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// db.WithContext(r.Context()).First(&customer, id) records this:
		events.Record(r.Context(), audit.Event{Type: audit.DecryptAccess, Class: "critical", Table: "customers", Column: "ssn", Row: "42"})
	}))
	req := httptest.NewRequest("GET", "/customers/42?ticket=4711", nil)
	req.Header.Set("X-Agent", "support:jane")
	handler.ServeHTTP(httptest.NewRecorder(), req)

	e := events.Events()[0]
	fmt.Println(e.Type, e.Actor, e.ActorKind, e.Purpose, e.Table, e.Row)
	// Output:
	// decrypt.access support:jane person 4711 customers 42
}

// A chained log: records, then Verify over its files. Changing any record
// in the file makes Verify name it.
func ExampleOpenChain() {
	dir, _ := os.MkdirTemp("", "chain-example")
	defer os.RemoveAll(dir)
	mk, _ := localkms.Create(filepath.Join(dir, "audit.key")) // in production: a KMS key
	cps := audit.FileCheckpoints{Path: filepath.Join(dir, "checkpoints.jsonl")}
	ctx := audit.WithPurpose(audit.WithActor(context.Background(), audit.Person("support:jane")), "ticket 4711")

	chain, _ := audit.OpenChain(ctx, audit.ChainOptions{Path: filepath.Join(dir, "audit.jsonl"), MasterKey: mk, Checkpoints: cps})
	for _, row := range []string{"41", "42"} {
		chain.Record(ctx, audit.Event{Type: audit.DecryptAccess, Class: "critical", Table: "customers", Column: "ssn", Row: row})
	}
	_ = chain.Close() // flushes, syncs, saves a checkpoint

	files, _ := audit.Files(filepath.Join(dir, "audit.jsonl"))
	stored, _ := cps.Checkpoints(ctx)
	rep, res, err := audit.BuildReport(ctx, files, audit.VerifyOptions{MasterKeys: []string{mk.URI()}, Checkpoints: stored}, audit.ReportOptions{})
	fmt.Println("intact:", err == nil, "records:", res.Records, "checkpoint:", res.Logs[0].Checkpoint.Seq)
	for _, a := range rep.Accesses {
		fmt.Println(a.Actor, a.Table+"."+a.Column, "reads:", a.Reads, "purposes:", a.Purposes)
	}
	// Output:
	// intact: true records: 3 checkpoint: 3
	// support:jane customers.ssn reads: 2 purposes: [ticket 4711]
}
