package backup

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fieldcrypt/fieldcrypt/envelope"
	"github.com/fieldcrypt/fieldcrypt/internal/testsvc"
)

// pgTool returns the path of a PostgreSQL client tool; missing tools skip
// the test on a developer machine and fail it under CI=true.
func pgTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if testsvc.InCI() {
			t.Fatalf("%s is required under CI=true: %v", name, err)
		}
		t.Skipf("%s not on PATH: %v", name, err)
	}
	return p
}

func runTool(t *testing.T, stdin []byte, name string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "PGCONNECT_TIMEOUT=10")
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, stderr.String())
	}
	return out
}

const pgSchema = `
CREATE TABLE customers (
	id     bigint PRIMARY KEY,
	email  text NOT NULL UNIQUE,
	name   text NOT NULL,
	secret bytea NOT NULL,
	joined timestamptz NOT NULL
);
CREATE TABLE orders (
	id          bigint PRIMARY KEY,
	customer_id bigint NOT NULL REFERENCES customers(id),
	total       numeric(12,2) NOT NULL,
	note        text,
	items       jsonb NOT NULL
);
INSERT INTO customers
SELECT i, 'user' || i || '@example.com', 'Customer ' || md5(i::text),
       decode(md5('s' || i) || md5('t' || i), 'hex'),
       timestamptz '2026-01-01 00:00:00+00' + i * interval '37 minutes'
FROM generate_series(1, 3000) AS i;
INSERT INTO orders
SELECT i, 1 + (i * 7919) % 3000, round((i * 1.37)::numeric % 1000, 2),
       CASE WHEN i % 5 = 0 THEN NULL ELSE repeat('note ' || i || ' ', 1 + i % 7) END,
       jsonb_build_object('sku', 'SKU-' || (i % 113), 'qty', 1 + i % 9)
FROM generate_series(1, 8000) AS i;
`

const pgChecksum = `
SELECT (SELECT count(*) FROM customers) || ':' || (SELECT count(*) FROM orders) || ':' ||
       (SELECT md5(string_agg(c::text, '|' ORDER BY id)) FROM customers c) || ':' ||
       (SELECT md5(string_agg(o::text, '|' ORDER BY id)) FROM orders o);
`

// TestPgDumpRoundTrip backs up a real PostgreSQL database: pg_dump -Fc of
// a fresh database with a few thousand rows -> Encrypt -> Verify -> Decrypt
// to a temp file -> pg_restore into another fresh database, then compares
// a checksum of every row in both.
func TestPgDumpRoundTrip(t *testing.T) {
	pgDump := pgTool(t, "pg_dump")
	pgRestore := pgTool(t, "pg_restore")
	psql := pgTool(t, "psql")
	_, srcDSN := testsvc.OpenDSN(t, testsvc.Postgres)
	_, dstDSN := testsvc.OpenDSN(t, testsvc.Postgres)
	ctx := context.Background()

	runTool(t, []byte(pgSchema), psql, "-v", "ON_ERROR_STOP=1", "-q", "-d", srcDSN)
	want := strings.TrimSpace(string(runTool(t, nil, psql, "-At", "-d", srcDSN, "-c", pgChecksum)))
	if !strings.HasPrefix(want, "3000:8000:") {
		t.Fatalf("source checksum %q", want)
	}

	// pg_dump streams straight into Encrypt.
	dir := t.TempDir()
	backupPath := filepath.Join(dir, "db.fcb")
	f, err := os.Create(backupPath)
	if err != nil {
		t.Fatal(err)
	}
	dump := exec.Command(pgDump, "-Fc", "--no-owner", "-d", srcDSN)
	var dumpErr bytes.Buffer
	dump.Stderr = &dumpErr
	stdout, err := dump.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := dump.Start(); err != nil {
		t.Fatal(err)
	}
	mk := randomMasterKey("local-test://pg-critical")
	res, err := Encrypt(ctx, f, stdout, mk, EncryptOptions{Class: envelope.Critical, Name: "pg_dump test", SegmentSize: 64 << 10})
	if werr := dump.Wait(); werr != nil {
		t.Fatalf("pg_dump: %v\n%s", werr, dumpErr.String())
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("pg_dump: %d bytes in %d segments", res.PlaintextBytes, res.Segments)

	// The backup holds no recognisable plaintext.
	ct, _ := os.ReadFile(backupPath)
	if bytes.Contains(ct, []byte("user42@example.com")) || bytes.Contains(ct, []byte("PGDMP")) {
		t.Fatal("backup contains plaintext")
	}

	// Restore: verify, decrypt to a temp file, rename on success, restore.
	opener := openerFor(mk)
	in, _ := os.Open(backupPath)
	if _, err := Verify(ctx, in, opener, DecryptOptions{Class: envelope.Critical, KeyURIs: []string{mk.URI()}}); err != nil {
		t.Fatal(err)
	}
	in.Close()
	in, _ = os.Open(backupPath)
	defer in.Close()
	tmp, err := os.CreateTemp(dir, "restore-*.tmp")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Decrypt(ctx, tmp, in, opener, DecryptOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := tmp.Close(); err != nil {
		t.Fatal(err)
	}
	dumpPath := filepath.Join(dir, "db.dump")
	if err := os.Rename(tmp.Name(), dumpPath); err != nil {
		t.Fatal(err)
	}
	runTool(t, nil, pgRestore, "--no-owner", "--exit-on-error", "-d", dstDSN, dumpPath)
	got := strings.TrimSpace(string(runTool(t, nil, psql, "-At", "-d", dstDSN, "-c", pgChecksum)))
	if got != want {
		t.Fatalf("restored checksum %q, want %q", got, want)
	}

	// A tampered backup never reaches pg_restore.
	ct[len(ct)/2] ^= 1
	if _, err := Verify(ctx, bytes.NewReader(ct), opener, DecryptOptions{}); err == nil {
		t.Fatal("tampered pg_dump backup verified")
	}
}
