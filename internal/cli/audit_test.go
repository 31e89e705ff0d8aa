package cli

import (
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/fieldcrypt/fieldcrypt/audit"
	"github.com/fieldcrypt/fieldcrypt/config"
	"github.com/fieldcrypt/fieldcrypt/console"
	"github.com/fieldcrypt/fieldcrypt/gormcrypt"
	"github.com/fieldcrypt/fieldcrypt/internal/testsvc"
	"github.com/fieldcrypt/fieldcrypt/keyring"
)

// consoleEnv is a configured project (audit log and chain, local master
// keys by absolute path) on db, with patients written through gormcrypt.
func consoleEnv(t *testing.T, db *gorm.DB, dsn string) (*env, []QuickstartPatient) {
	t.Helper()
	e := newEnv(t)
	var cols strings.Builder
	for _, c := range quickstartColumns {
		bidx := ""
		if c.Column == "ssn" {
			bidx = ", blind_index: ssn_bidx"
		}
		fmt.Fprintf(&cols, "  - {table: %s, column: %s, pk: %s, class: %s, mode: %s, row_bound: %v%s}\n", c.Table, c.Column, c.PK, c.Class, c.Mode, c.RowBound, bidx)
	}
	e.write("fieldcrypt.yaml", fmt.Sprintf(`keyring: console
database: %q
audit_log: audit.jsonl
audit_chain: {path: chain/audit.jsonl, master_key: "local://%[2]s/keys/audit.key", checkpoints: chain/checkpoints.jsonl}
classes:
  critical: {master_key: "local://%[2]s/keys/critical.key"}
  high: {master_key: "local://%[2]s/keys/high.key"}
columns:
%s`, dsn, e.dir, cols.String()))
	require.NoError(t, os.MkdirAll(filepath.Join(e.dir, "chain"), 0o700))
	r := e.ok("init")
	assert.Contains(t, r.stderr, "audit.key", "init creates the audit chain's master key")

	cfg, err := config.Load(e.dir, func(string) string { return "" }, config.Overrides{})
	require.NoError(t, err)
	kc, err := cfg.KeyringConfig()
	require.NoError(t, err)
	kr, err := keyring.New(kc, keyring.NewGormStoreNoMigrate(db))
	require.NoError(t, err)
	t.Cleanup(func() { kr.Close() })
	sqlDB, err := db.DB()
	require.NoError(t, err)
	app, err := gorm.Open(db.Dialector, &gorm.Config{ConnPool: sqlDB, Logger: logger.Discard})
	require.NoError(t, err)
	require.NoError(t, app.Use(gormcrypt.New(kr)))
	require.NoError(t, gormcrypt.AutoMigrate(app, &QuickstartPatient{}))
	ps := make([]QuickstartPatient, len(quickstartPatients))
	copy(ps, quickstartPatients)
	for i := range ps {
		require.NoError(t, app.Create(&ps[i]).Error)
	}
	return e, ps
}

func (e *env) chainFiles() []string {
	files, err := audit.Files(filepath.Join(e.dir, "chain", "audit.jsonl"))
	require.NoError(e.t, err)
	return files
}

func TestShowRevealAndAuditCommands(t *testing.T) {
	for _, d := range testsvc.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			db, dsn := testsvc.OpenDSN(t, d)
			e, ps := consoleEnv(t, db, dsn)

			r := e.ok("show", "patients")
			assert.Contains(t, r.stdout, "[critical v1, ")
			assert.Contains(t, r.stdout, "row-bound]")
			assert.Contains(t, r.stdout, "[blind index of critical, 16 B]")
			assert.Contains(t, r.stdout, "(5 rows)")

			for _, w := range []string{"ssn=" + ps[2].SSN, "email=" + ps[2].Email, "id=" + ps[2].ID.String()} {
				var res console.Result
				require.NoError(t, json.Unmarshal([]byte(e.ok("show", "patients", "--where", w, "-o", "json").stdout), &res))
				require.Len(t, res.Rows, 1, w)
			}
			e.code(ExitUsage, "show", "patients", "--where", "name="+ps[2].Name)
			e.code(ExitUsage, "show", "patients", "--where", "nothing")
			e.code(ExitUsage, "show", "patients", "-o", "csv")
			e.code(ExitUsage, "show", "patients; drop table patients")

			// A reveal needs a reason: refused, recorded.
			r = e.code(ExitRefused, "show", "patients", "--where", "ssn="+ps[2].SSN, "--reveal", "ssn")
			assert.Contains(t, r.stderr, "reason")
			r = e.ok("show", "patients", "--where", "ssn="+ps[2].SSN, "--reveal", "ssn", "--reveal", "notes", "--reason", "ticket 4711", "-o", "json")
			var res console.Result
			require.NoError(t, json.Unmarshal([]byte(r.stdout), &res))
			assert.Equal(t, 1, res.Revealed, "notes of patient 3 is NULL")
			assert.Contains(t, r.stdout, ps[2].SSN, "the operator sees the revealed value")
			e.outputs[len(e.outputs)-2] = "" // that stdout is the data itself

			// The chain verifies and reports the reveal with actor and reason.
			var v audit.VerifyResult
			require.NoError(t, json.Unmarshal([]byte(e.ok("audit", "verify", "-o", "json").stdout), &v))
			assert.True(t, v.OK)
			require.Len(t, v.Logs, 1)
			assert.NotNil(t, v.Logs[0].Checkpoint)
			assert.Contains(t, e.ok("audit", "verify").stdout, "OK: ")

			var rep audit.Report
			require.NoError(t, json.Unmarshal([]byte(e.ok("audit", "report", "-o", "json").stdout), &rep))
			assert.Equal(t, int64(1), rep.Totals.Reads)
			assert.Equal(t, int64(1), rep.Totals.Refused, "the reveal without a reason")
			var access audit.AccessRecord
			for _, rec := range rep.Records {
				if rec.Event == audit.DecryptAccess {
					access = rec
				}
			}
			assert.Equal(t, "tester", access.Actor)
			assert.Equal(t, audit.KindPerson, access.ActorKind)
			assert.Equal(t, "ticket 4711", access.Purpose)
			assert.Equal(t, ps[2].ID.String(), access.Row)
			assert.Equal(t, "ssn", access.Column)
			assert.Equal(t, uint32(1), access.KEK)
			rows, err := csv.NewReader(strings.NewReader(e.ok("audit", "report", "-o", "csv", "--table", "patients").stdout)).ReadAll()
			require.NoError(t, err)
			assert.Equal(t, audit.CSVHeader, rows[0])
			assert.Len(t, rows, 3, "one access and one refusal")
			assert.Contains(t, e.ok("audit", "report", "--since", "1d").stdout, "refused")

			// A review, then every access is reviewed.
			e.code(ExitUsage, "audit", "review")
			r = e.ok("audit", "review", "--note", "fortnightly review", "--reviewer", "auditor:kim")
			assert.Contains(t, r.stdout, "reviewed by auditor:kim")
			require.NoError(t, json.Unmarshal([]byte(e.ok("audit", "report", "-o", "json").stdout), &rep))
			assert.Zero(t, rep.Totals.Unreviewed)
			require.Len(t, rep.Reviews, 1)
			assert.Equal(t, "fortnightly review", rep.Reviews[0].Note)

			// Tampering: exit 3, the first bad record named.
			files := e.chainFiles()
			data, err := os.ReadFile(files[0])
			require.NoError(t, err)
			tampered := strings.Replace(string(data), `"purpose":"ticket 4711"`, `"purpose":"ticket 4712"`, 1)
			require.NotEqual(t, string(data), tampered)
			require.NoError(t, os.WriteFile(files[0], []byte(tampered), 0o600))
			r = e.code(ExitIntegrity, "audit", "verify")
			assert.Contains(t, r.stdout, "TAMPERED: ")
			assert.Contains(t, r.stdout, "MAC does not verify")
			r = e.code(ExitIntegrity, "audit", "verify", "-o", "json")
			require.NoError(t, json.Unmarshal([]byte(r.stdout), &v))
			assert.False(t, v.OK)
			require.NotNil(t, v.Problem)
			assert.Positive(t, v.Problem.Line)
			e.code(ExitIntegrity, "audit", "report")
			// The writer refuses to continue a tampered log: reveals refuse.
			e.code(ExitRefused, "show", "patients", "--reveal", "ssn", "--reason", "ticket 4713")

			everything := e.everything() + readFile(t, filepath.Join(e.dir, "audit.jsonl"))
			for _, f := range files {
				everything += readFile(t, f)
			}
			for _, p := range ps {
				assert.NotContains(t, everything, p.SSN)
				assert.NotContains(t, everything, p.Name)
			}
		})
	}
}

func TestAuditCommandErrors(t *testing.T) {
	e := newEnv(t)
	e.code(ExitUsage, "audit", "verify")
	e.code(ExitUsage, "audit", "report", "--since", "yesterday-ish", "x.jsonl")
	e.code(ExitUsage, "audit", "verify", "-o", "csv")
	tests := []struct {
		err  error
		want int
	}{
		{fmt.Errorf("x: %w", audit.ErrTampered), ExitIntegrity},
		{audit.ErrTruncated, ExitIntegrity},
		{fmt.Errorf("x: %w", audit.ErrPurposeRequired), ExitRefused},
		{console.ErrAuditUnavailable, ExitRefused},
		{audit.ErrLogInUse, ExitRefused},
		{console.ErrNotSearchable, ExitUsage},
		{errors.Join(console.ErrInvalidQuery), ExitUsage},
	}
	for _, tc := range tests {
		assert.Equal(t, tc.want, ExitCode(tc.err), "%v", tc.err)
	}
}
