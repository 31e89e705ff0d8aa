package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fieldcrypt/fieldcrypt/internal/testsvc"
)

// tenantEnv is a keyring with tenants acme and globex in a tenant-scoped
// class.
func tenantEnv(t *testing.T) *env {
	e := newEnv(t)
	e.write("fieldcrypt.yaml", `classes:
  critical: {master_key: "local://k/critical.key", tenant_scoped: true}
  low: {master_key: "local://k/low.key"}
audit_log: audit.jsonl
`)
	e.ok("init", "--tenant", "acme")
	e.ok("init", "--tenant", "globex")
	return e
}

func (e *env) states() map[string]string {
	e.t.Helper()
	var keks []kekJSON
	require.NoError(e.t, json.Unmarshal([]byte(e.ok("keys", "list", "-o", "json").stdout), &keks))
	out := map[string]string{}
	for _, k := range keks {
		out[scopeName(k.Class, k.Tenant)] = k.State
	}
	return out
}

// Issue 12 §1: every precondition of a shred is checked before anything
// is destroyed, and an unknown tenant is an error.
func TestShredChecksBeforeDestroying(t *testing.T) {
	e := tenantEnv(t)
	e.write("exists.json", "{}")
	for _, report := range []string{"exists.json", filepath.Join("no", "such", "dir", "r.json")} {
		r := e.code(ExitUsage, "keys", "shred", "--tenant", "acme", "--yes", "--report", report)
		assert.Contains(t, r.stderr, "report", report)
		assert.Equal(t, "active", e.states()["critical/tenant=acme"], "nothing destroyed (%s)", report)
	}
	r := e.code(ExitUsage, "keys", "shred", "--tenant", "nosuch", "--yes")
	assert.Contains(t, r.stderr, `tenant "nosuch"`)
	assert.NotContains(t, readFile(t, filepath.Join(e.dir, "audit.jsonl")), `"tenant":"nosuch"`)

	r = e.ok("keys", "shred", "--tenant", "acme", "--yes", "--report", "r.json")
	assert.Contains(t, r.stdout, "SHRED REPORT")
	assert.FileExists(t, filepath.Join(e.dir, "r.json"))
}

// Issue 12 §2: destroying a destroyed version says so, records nothing
// and exits 4.
func TestDestroyTwice(t *testing.T) {
	e, _ := quickstartEnv(t)
	e.ok("keys", "rotate", "--class", "critical")
	e.ok("reencrypt", "--column", "patients.ssn", "--column", "patients.notes")
	e.afterDemotion()
	e.ok("keys", "destroy", "--class", "critical", "--version", "2", "--yes")
	before := strings.Count(e.auditLog(), `"event":"kek.destroyed"`)
	r := e.code(ExitKey, "keys", "destroy", "--class", "critical", "--version", "2", "--yes")
	assert.Contains(t, r.stderr, "critical/v2 is already destroyed")
	assert.NotContains(t, r.stdout, "destroyed critical/v2")
	assert.Equal(t, before, strings.Count(e.auditLog(), `"event":"kek.destroyed"`), "no second event")
}

// Issue 12 §6: messages name commands and flags, in one sentence.
func TestMessagesForOperators(t *testing.T) {
	e, _ := quickstartEnv(t)
	// v1 of high is the search key
	e.afterDemotion()
	r := e.code(ExitRefused, "keys", "destroy", "--class", "high", "--version", "1", "--yes")
	assert.Contains(t, r.stderr, "fieldcrypt keys rotate --search")
	assert.NotContains(t, r.stderr, "RotateSearch")
	// the primary
	r = e.code(ExitRefused, "keys", "retire", "--class", "high", "--version", "2")
	assert.Contains(t, r.stderr, "fieldcrypt keys rotate")
	assert.NotContains(t, r.stderr, "Rotate first")
	// a missing confirmation
	e.ok("keys", "rotate", "--class", "critical")
	e.ok("reencrypt", "--all")
	e.afterDemotion()
	r = e.code(ExitRefused, "keys", "destroy", "--class", "critical", "--version", "2")
	line := strings.TrimSpace(strings.SplitN(r.stderr, "\n", 2)[0])
	assert.Equal(t, "fieldcrypt: destroying KEK critical/v2 needs confirmation: pass --yes (no terminal to ask on)", line)
}

// Issue 12 §5: clear errors, with the right exit code, before anything
// runs.
func TestUnclearErrors(t *testing.T) {
	for _, d := range testsvc.Dialects() {
		t.Run("ghost column/"+string(d), func(t *testing.T) {
			db, dsn := testsvc.OpenDSN(t, d)
			plainTable(t, db, map[int]string{1: "a"})
			e := flowEnv(t, dsn)
			e.write("fieldcrypt.yaml", strings.Replace(readFile(t, filepath.Join(e.dir, "fieldcrypt.yaml")), "column: secret", "column: ghost", 1))
			e.ok("init")
			for _, args := range [][]string{{"keys", "census"}, {"encrypt-existing", "--column", "customers.ghost"}} {
				r := e.code(ExitUsage, args...)
				assert.Contains(t, r.stderr, "column customers.ghost does not exist")
				assert.NotContains(t, r.stderr, "no rows")
			}
		})
	}
	e, _ := quickstartEnv(t)
	r := e.code(ExitUsage, "reencrypt", "--batch-size", "999999")
	assert.Empty(t, r.stdout, "nothing started")
	assert.Contains(t, r.stderr, "--batch-size")
	for _, url := range []string{"postgres://", "postgres://app@db:port/app", "postgresql://app@/app", "postgres://app@db:5432"} {
		f := newEnv(t)
		f.vars["FIELDCRYPT_MASTER_KEY_LOW"] = "local://low.key"
		r := f.code(ExitUsage, "keys", "list", "--database", url)
		assert.Contains(t, r.stderr, "database", url)
	}
}

// Issue 12 §8: init's hint, census totals, --job-id.
func TestOperatorOutput(t *testing.T) {
	e, _ := quickstartEnv(t)
	r := e.ok("init")
	assert.NotContains(t, r.stdout, "list your encrypted columns", "the columns are configured")
	assert.Contains(t, r.stdout, "fieldcrypt keys census")
	f := newEnv(t)
	assert.Contains(t, f.ok("init").stdout, "list your encrypted columns")

	r = e.ok("keys", "census")
	total := r.stdout[strings.Index(r.stdout, "Total:"):]
	assert.Contains(t, total, "high/v1 (deterministic)")
	assert.Equal(t, 1, strings.Count(total, "high/v1 "), "each line says what it counts:\n%s", total)

	help := e.ok("reencrypt", "--help").stdout
	assert.Contains(t, help, "exactly one --column")
	cli, err := os.ReadFile(filepath.Join("..", "..", "docs", "cli.md"))
	require.NoError(t, err)
	assert.Contains(t, string(cli), "`--job-id` names one job: give exactly one `--column` with it")
}

// Issue 12: re-encryption jobs you can see and steer.
func TestReencryptStatusAndPrune(t *testing.T) {
	e, _ := quickstartEnv(t)
	e.ok("keys", "rotate", "--class", "critical")
	e.ok("reencrypt", "--column", "patients.ssn", "--job-id", "rot-1", "--lease", "3s")
	var jobs []struct {
		JobID      string  `json:"job_id"`
		Table      string  `json:"table"`
		Column     string  `json:"column"`
		ChunksDone int     `json:"chunks_done"`
		Finished   *string `json:"finished"`
		Workers    []any   `json:"workers"`
	}
	require.NoError(t, json.Unmarshal([]byte(e.ok("reencrypt", "status", "-o", "json").stdout), &jobs))
	require.NotEmpty(t, jobs)
	found := false
	for _, j := range jobs {
		if j.JobID == "rot-1" {
			found = true
			assert.Equal(t, "patients", j.Table)
			assert.Equal(t, "ssn", j.Column)
			assert.NotNil(t, j.Finished)
			assert.Positive(t, j.ChunksDone)
			assert.NotNil(t, j.Workers)
		}
	}
	assert.True(t, found)
	assert.Contains(t, e.ok("reencrypt", "status", "--job", "rot-1").stdout, "rot-1  patients.ssn  rewrap  finished")
	e.code(ExitUsage, "reencrypt", "status", "--job", "nosuch")
	e.code(ExitUsage, "reencrypt", "--lease", "10ms")

	assert.Contains(t, e.ok("reencrypt", "prune").stdout, "pruned 0 jobs", "finished less than 7 days ago")
	r := e.ok("reencrypt", "prune", "--older-than", "0s", "-o", "json")
	var pr map[string][]string
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &pr))
	assert.Contains(t, pr["pruned"], "rot-1")
	assert.Contains(t, e.ok("reencrypt", "status").stdout, "no re-encryption jobs")
}
