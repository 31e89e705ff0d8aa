package e2e

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/fieldcrypt/fieldcrypt/audit"
	"github.com/fieldcrypt/fieldcrypt/backup"
	"github.com/fieldcrypt/fieldcrypt/console"
	"github.com/fieldcrypt/fieldcrypt/envelope"
	"github.com/fieldcrypt/fieldcrypt/gormcrypt"
	"github.com/fieldcrypt/fieldcrypt/internal/testsvc"
	"github.com/fieldcrypt/fieldcrypt/keyring"
	"github.com/fieldcrypt/fieldcrypt/keyring/kms"
	"github.com/fieldcrypt/fieldcrypt/keyring/kms/localkms"
)

// Canaries are plaintexts that must never appear anywhere but in the
// application's own variables.
const (
	canarySSN   = "CANARY-SSN-7e1f9c"
	canaryEmail = "canary-4b2d@leak.example"
	canaryNote  = "CANARY-NOTE-a83c55"
	canaryDump  = "CANARY-DUMP-19fe0d"
)

type patient struct {
	ID    string
	Name  string  `fieldcrypt:"high"`
	SSN   string  `fieldcrypt:"critical,blindindex"`
	Email string  `fieldcrypt:"high,deterministic"`
	Notes *string `fieldcrypt:"critical"`
}

// transcript collects everything a leak could end up in.
type transcript struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (t *transcript) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.buf.Write(p)
}

func (t *transcript) add(format string, args ...any) { fmt.Fprintf(t, format+"\n", args...) }

// gormLog is a GORM logger at Info level writing SQL with bound values.
type gormLog struct{ w *transcript }

func (l gormLog) LogMode(logger.LogLevel) logger.Interface    { return l }
func (l gormLog) Info(_ context.Context, s string, a ...any)  { l.w.add(s, a...) }
func (l gormLog) Warn(_ context.Context, s string, a ...any)  { l.w.add(s, a...) }
func (l gormLog) Error(_ context.Context, s string, a ...any) { l.w.add(s, a...) }
func (l gormLog) Trace(_ context.Context, _ time.Time, fc func() (string, int64), err error) {
	sql, rows := fc()
	l.w.add("%s [%d rows] %v", sql, rows, err)
}

// TestNoCanaryLeaks seals canary values through every library path, drives
// failing paths too (tampering, wrong binding, destroyed key, corrupt
// backup), captures every log line, audit event, SQL log and error, and
// asserts that no canary appears in any of them.
func TestNoCanaryLeaks(t *testing.T) {
	ctx := context.Background()
	out := &transcript{}
	dir := t.TempDir()

	slogger := slog.New(slog.NewJSONHandler(out, &slog.HandlerOptions{Level: slog.LevelDebug}))
	sink := audit.Sampled(audit.NewSlogSink(slogger), 1)

	critKey := filepath.Join(dir, "critical.key")
	highKey := filepath.Join(dir, "high.key")
	critMK, err := localkms.Create(critKey)
	require.NoError(t, err)
	_, err = localkms.Create(highKey)
	require.NoError(t, err)
	cfg := keyring.Config{Name: "canary", Classes: map[string]keyring.ClassConfig{
		"critical": {MasterKey: localkms.URI(critKey)},
		"high":     {MasterKey: localkms.URI(highKey)},
	}}

	// The chained audit log records every read (accountable access).
	auditKey, err := localkms.Create(filepath.Join(dir, "audit.key"))
	require.NoError(t, err)
	chainPath := filepath.Join(dir, "chain.jsonl")
	chain, err := audit.OpenChain(ctx, audit.ChainOptions{Path: chainPath, MasterKey: auditKey, Checkpoints: audit.FileCheckpoints{Path: filepath.Join(dir, "cps.jsonl")}})
	require.NoError(t, err)
	readSink := audit.Multi(sink, chain)

	for _, d := range testsvc.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			raw := testsvc.Open(t, d)
			sqlDB, err := raw.DB()
			require.NoError(t, err)
			db, err := gorm.Open(raw.Dialector, &gorm.Config{Logger: gormLog{out}, ConnPool: sqlDB})
			require.NoError(t, err)
			store, err := keyring.NewGormStore(ctx, db.Session(&gorm.Session{Logger: logger.Discard}))
			require.NoError(t, err)
			kr, err := keyring.New(cfg, store, keyring.WithAudit(sink))
			require.NoError(t, err)
			defer kr.Close()
			require.NoError(t, db.Use(gormcrypt.New(kr).WithAudit(readSink)))
			require.NoError(t, gormcrypt.AutoMigrate(db, &patient{}))
			env := envelope.New(kr)

			// Writes and reads through gormcrypt.
			note := canaryNote
			p := patient{ID: "p-1", Name: "Ada", SSN: canarySSN, Email: canaryEmail, Notes: &note}
			require.NoError(t, db.Create(&p).Error)
			require.NoError(t, db.Model(&patient{ID: "p-1"}).Updates(map[string]any{"notes": canaryNote + "-2"}).Error)
			require.NoError(t, db.Model(&patient{ID: "p-1"}).Update("ssn", canarySSN).Error)
			var got patient
			require.NoError(t, db.Where(&patient{SSN: canarySSN}).First(&got).Error)
			require.Equal(t, canaryEmail, got.Email)
			require.NoError(t, db.Where(&patient{Email: canaryEmail}).First(&got).Error)
			out.add("read ok: %+v", envelope.Binding{Table: "patients"}) // a normal log line

			// Accountable access: a person's read without a purpose is
			// refused, with one; the console shows metadata and reveals
			// with a reason.
			person := audit.WithActor(ctx, audit.Person("support:jane"))
			err = db.WithContext(person).Where(&patient{SSN: canarySSN}).First(&got).Error
			require.ErrorIs(t, err, gormcrypt.ErrPurposeRequired)
			out.add("no purpose: %v %+v", err, got)
			require.NoError(t, db.WithContext(audit.WithPurpose(person, "ticket 4711")).Where(&patient{SSN: canarySSN}).First(&got).Error)
			fields, err := gormcrypt.Fields(db, &patient{})
			require.NoError(t, err)
			con, err := console.NewGorm(raw, console.Config{Keys: kr, Audit: readSink, Columns: console.FromFields("id", fields...)})
			require.NoError(t, err)
			shown, err := con.Show(person, console.Query{Table: "patients", Where: &console.Condition{Column: "ssn", Value: canarySSN}})
			require.NoError(t, err)
			require.Len(t, shown.Rows, 1)
			require.NoError(t, shown.WriteText(out))
			_, err = con.Reveal(person, console.Query{Table: "patients", Where: &console.Condition{Column: "email", Value: canaryEmail}}, []string{"ssn", "notes"}, "")
			out.add("reveal without reason: %v", err)
			revealed, err := con.Reveal(person, console.Query{Table: "patients", Where: &console.Condition{Column: "email", Value: canaryEmail}}, []string{"ssn", "notes"}, "ticket 4711")
			require.NoError(t, err)
			require.Equal(t, 2, revealed.Revealed) // the operator's screen: not in the transcript

			// Failing paths: each error goes into the transcript.
			var rawSSN string
			require.NoError(t, raw.Raw("SELECT ssn FROM patients WHERE id = ?", "p-1").Row().Scan(&rawSSN)) // around the plugin
			require.NoError(t, db.Create(&patient{ID: "p-2", Name: "Bob", SSN: "other", Email: "b@example.com"}).Error)
			// The attacker (a DBA) writes with plain SQL, no plugin.
			require.NoError(t, raw.Exec("UPDATE patients SET ssn = ? WHERE id = ?", rawSSN, "p-2").Error)
			err = db.First(&got, "id = ?", "p-2").Error
			require.Error(t, err, "a ciphertext moved to another row must not decrypt")
			out.add("moved row: %v", err)
			err = db.Where("ssn = ?", canarySSN).First(&got).Error
			require.Error(t, err, "a plaintext string condition on an encrypted column is refused")
			out.add("string condition: %v", err)
			err = db.Exec("UPDATE patients SET ssn = ? WHERE id = ?", canarySSN, "p-1").Error
			require.Error(t, err, "a raw plaintext write into an encrypted column is refused")
			out.add("raw write: %v", err)
			var ssns []string
			err = db.Model(&patient{}).Pluck("ssn", &ssns).Error
			out.add("pluck: %v %v", err, ssns)

			b := envelope.Binding{Class: envelope.Critical, Table: "patients", Column: "ssn", Row: "p-1"}
			ct, err := env.Seal(ctx, b, []byte(canarySSN))
			require.NoError(t, err)
			bad := append([]byte(nil), ct...)
			bad[len(bad)-1] ^= 1
			_, err = env.Open(ctx, b, bad)
			out.add("tampered: %v", err)
			_, err = env.Open(ctx, envelope.Binding{Class: envelope.Critical, Table: "patients", Column: "notes", Row: "p-1"}, ct)
			out.add("wrong column: %v", err)
			slogger.Error("decrypt failed", "err", err, "binding", b)

			// Destroyed key: rotate, destroy the old version, read.
			_, err = kr.Rotate(ctx, envelope.Scope{Class: envelope.High})
			require.NoError(t, err)
			_, err = kr.Rotate(ctx, envelope.Scope{Class: envelope.Critical})
			require.NoError(t, err)
			_, err = kr.RotateSearch(ctx, envelope.Scope{Class: envelope.Critical})
			require.NoError(t, err)
			_, err = kr.FinishSearchRotation(ctx, envelope.Scope{Class: envelope.Critical})
			require.NoError(t, err)
			// Forced: no other process uses this keyring, so nothing can still be sealing under v1.
			_, err = kr.Destroy(ctx, envelope.KEKRef{Class: envelope.Critical, Version: 1}, keyring.Force())
			require.NoError(t, err)
			_, err = env.Open(ctx, b, ct)
			require.True(t, errors.Is(err, envelope.ErrKeyDestroyed), "%v", err)
			out.add("destroyed: %v", err)
			err = db.First(&got, "id = ?", "p-1").Error
			out.add("read after destroy: %v", err)

			// Key material must not leak either.
			kek, err := kr.PrimaryKEK(ctx, envelope.Scope{Class: envelope.High})
			require.NoError(t, err)
			out.add("kek: %v %+v %#v", kek, kek, kek)
			slogger.Info("kek", "kek", kek)
		})
	}

	// The chained log, its verification and every report format.
	require.NoError(t, chain.Close())
	files, err := audit.Files(chainPath)
	require.NoError(t, err)
	cps, err := audit.FileCheckpoints{Path: filepath.Join(dir, "cps.jsonl")}.Checkpoints(ctx)
	require.NoError(t, err)
	rep, vres, err := audit.BuildReport(ctx, files, audit.VerifyOptions{MasterKeys: []string{auditKey.URI()}, Checkpoints: cps}, audit.ReportOptions{})
	require.NoError(t, err)
	require.Positive(t, rep.Totals.Reads)
	require.Positive(t, rep.Totals.Refused)
	out.add("verify: %+v", vres)
	require.NoError(t, rep.WriteText(out))
	require.NoError(t, rep.WriteCSV(out))
	require.NoError(t, json.NewEncoder(out).Encode(rep))
	for _, f := range files {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		out.add("%s", b)
	}

	// Backups: a canary stream, then a corrupted copy.
	var fcb bytes.Buffer
	_, err = backup.Encrypt(ctx, &fcb, strings.NewReader(strings.Repeat(canaryDump+"\n", 10000)), critMK, backup.EncryptOptions{Class: envelope.Critical, SegmentSize: 4096})
	require.NoError(t, err)
	require.NotContains(t, fcb.String(), canaryDump)
	corrupt := append([]byte(nil), fcb.Bytes()...)
	corrupt[len(corrupt)/2] ^= 0x20
	var sinkOut bytes.Buffer
	_, err = backup.Decrypt(ctx, &sinkOut, bytes.NewReader(corrupt), kms.OpenerFunc(kms.Open), backup.DecryptOptions{})
	require.Error(t, err)
	out.add("corrupt backup: %v", err)
	h, err := backup.Inspect(bytes.NewReader(fcb.Bytes()))
	require.NoError(t, err)
	out.add("backup header: %+v", h)

	text := out.buf.String()
	require.Contains(t, text, "fieldcrypt.audit", "the transcript did capture audit events")
	require.Contains(t, text, "INSERT INTO", "the transcript did capture SQL")
	require.Contains(t, text, `"event":"decrypt.refused"`, "the transcript did capture the chained log")
	require.Contains(t, text, "[critical v", "the transcript did capture the console")
	for _, c := range []string{canarySSN, canaryEmail, canaryNote, canaryDump} {
		assert.NotContains(t, text, c, "canary %q leaked", c)
		assert.NotContains(t, text, hex.EncodeToString([]byte(c)), "canary %q leaked as hex", c)
	}
	keyBytes, err := os.ReadFile(critKey)
	require.NoError(t, err)
	assert.NotContains(t, text, strings.TrimSpace(strings.SplitN(string(keyBytes), ":", 2)[1]), "master key leaked")
}
