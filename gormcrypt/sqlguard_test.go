package gormcrypt

import (
	"database/sql"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeTables registers table accts with encrypted columns notes, ssn and
// visits for the guard's unit tests.
type fakeTables map[string][]string

func (f fakeTables) isTable(name string) bool { _, ok := f[name]; return ok }
func (f fakeTables) encryptedColumn(tables []string, column string) bool {
	for _, t := range tables {
		for _, c := range f[t] {
			if c == strings.ToLower(column) {
				return true
			}
		}
	}
	return false
}

var guardTables = fakeTables{"accts": {"notes", "ssn", "visits"}}

const ct = "fc1:AQIDBA" // looks like a ciphertext to the guard (prefix only)

func TestGuardRefuses(t *testing.T) {
	all := []dialect{dialectSQLite, dialectPostgres, dialectMySQL}
	cases := []struct {
		name     string
		sql      string
		args     []any
		dialects []dialect // nil: all
	}{
		{"update param", "UPDATE accts SET notes = ? WHERE id = ?", []any{"secret", 1}, nil},
		{"update upper case", "UPDATE accts SET NOTES = ? WHERE id = ?", []any{"secret", 1}, nil},
		{"update mixed table case", "UPDATE Accts SET Notes = ? WHERE id = ?", []any{"secret", 1}, nil},
		{"update no spaces", "UPDATE accts SET notes=? WHERE id=?", []any{"secret", 1}, nil},
		{"double quoted", `UPDATE "accts" SET "NOTES" = ? WHERE "id" = ?`, []any{"secret", 1}, []dialect{dialectSQLite, dialectPostgres}},
		{"backquoted", "UPDATE `accts` SET `Notes` = ? WHERE `id` = ?", []any{"secret", 1}, []dialect{dialectSQLite, dialectMySQL}},
		{"bracketed", "UPDATE [accts] SET [notes] = ? WHERE id = ?", []any{"secret", 1}, []dialect{dialectSQLite}},
		{"schema qualified", "UPDATE public.accts SET accts.notes = ? WHERE id = ?", []any{"secret", 1}, nil},
		{"alias", "UPDATE accts AS a SET a.notes = ? WHERE a.id = ?", []any{"secret", 1}, nil},
		{"comments", "UPDATE accts SET /* x */ notes -- y\n = ? WHERE id = ?", []any{"secret", 1}, nil},
		{"newlines and tabs", "UPDATE\n\taccts\nSET\n\tnotes\n=\n?\nWHERE id = ?", []any{"secret", 1}, nil},
		{"literal", "UPDATE accts SET notes = 'secret' WHERE id = ?", []any{1}, nil},
		{"number literal", "UPDATE accts SET visits = 7 WHERE id = ?", []any{1}, nil},
		{"int param", "UPDATE accts SET visits = ? WHERE id = ?", []any{7, 1}, nil},
		{"function", "UPDATE accts SET notes = concat(?, 'x') WHERE id = ?", []any{"secret", 1}, nil},
		{"concatenation", "UPDATE accts SET notes = notes || ? WHERE id = ?", []any{"secret", 1}, nil},
		{"case", "UPDATE accts SET notes = CASE WHEN id = 1 THEN ? ELSE notes END", []any{"secret"}, nil},
		{"insert", "INSERT INTO accts (id, notes) VALUES (?, ?)", []any{1, "secret"}, nil},
		{"insert upper case column", "INSERT INTO accts (id, NOTES) VALUES (?, ?)", []any{1, "secret"}, nil},
		{"insert quoted", `INSERT INTO "public"."accts" ("id", "Notes") VALUES ($1, $2)`, []any{1, "secret"}, []dialect{dialectPostgres}},
		{"insert literal", "INSERT INTO accts (id, notes) VALUES (1, 'secret')", nil, nil},
		{"insert second row", "INSERT INTO accts (id, notes) VALUES (?, ?), (?, ?)", []any{1, ct, 2, "secret"}, nil},
		{"insert without columns", "INSERT INTO accts VALUES (?, ?)", []any{1, "secret"}, nil},
		{"insert select", "INSERT INTO accts (id, notes) SELECT ?, ?", []any{1, "secret"}, nil},
		{"insert set", "INSERT INTO accts SET notes = ?", []any{"secret"}, []dialect{dialectMySQL}},
		{"upsert update", "INSERT INTO accts (id, notes) VALUES (?, ?) ON CONFLICT (id) DO UPDATE SET notes = ?", []any{1, ct, "secret"}, []dialect{dialectSQLite, dialectPostgres}},
		{"replace", "REPLACE INTO accts (id, notes) VALUES (?, ?)", []any{1, "secret"}, []dialect{dialectSQLite, dialectMySQL}},
		{"where", "SELECT * FROM accts WHERE ssn = ?", []any{"123-45-6789"}, nil},
		{"where upper", "SELECT * FROM accts WHERE SSN = ?", []any{"123-45-6789"}, nil},
		{"where reversed", "SELECT * FROM accts WHERE ? = ssn", []any{"123-45-6789"}, nil},
		{"where in", "SELECT * FROM accts WHERE ssn IN (?, ?)", []any{ct, "123-45-6789"}, nil},
		{"where not in", "SELECT * FROM accts WHERE ssn NOT IN (?)", []any{"123-45-6789"}, nil},
		{"where like", "SELECT * FROM accts WHERE ssn LIKE ?", []any{"123%"}, nil},
		{"where function", "SELECT * FROM accts WHERE lower(ssn) = lower(?)", []any{"x"}, nil},
		{"where instr", "SELECT * FROM accts WHERE instr(ssn, ?) > 0", []any{"x"}, nil},
		{"where between", "SELECT * FROM accts WHERE ssn BETWEEN ? AND ?", []any{"a", "b"}, nil},
		{"where between second", "SELECT * FROM accts WHERE ssn BETWEEN ? AND ?", []any{ct, "b"}, nil},
		{"is distinct from", "SELECT * FROM accts WHERE ssn IS DISTINCT FROM $1", []any{"x"}, []dialect{dialectPostgres}},
		{"dollar param", "SELECT * FROM accts WHERE ssn = $1", []any{"x"}, []dialect{dialectPostgres}},
		{"dollar param second", "SELECT * FROM accts WHERE id = $1 AND ssn = $2", []any{1, "x"}, []dialect{dialectPostgres}},
		{"named param", "SELECT * FROM accts WHERE ssn = :v", nil, nil},
		{"where literal", "SELECT * FROM accts WHERE ssn = '123-45-6789'", nil, nil},
		{"where number literal", "SELECT * FROM accts WHERE visits = 7", nil, nil},
		{"delete", "DELETE FROM accts WHERE ssn = ?", []any{"x"}, nil},
		{"join condition", "SELECT a.id FROM accts a JOIN b ON b.x = a.ssn WHERE a.ssn = ?", []any{"x"}, nil},
		{"subquery", "SELECT * FROM t WHERE id IN (SELECT id FROM accts WHERE ssn = ?)", []any{"x"}, nil},
		{"cte", "WITH x AS (SELECT 1) UPDATE accts SET notes = ? WHERE id = ?", []any{"secret", 1}, nil},
		{"after ddl", "CREATE TEMP TABLE t (a int); UPDATE accts SET notes = ? WHERE id = ?", []any{"secret", 1}, nil},
		{"executable comment", "/*!50000 UPDATE accts SET notes = ? */", []any{"secret"}, []dialect{dialectMySQL}},
		{"backslash ambiguity", `UPDATE accts SET age = 'a\' , notes = ? -- ' WHERE id = ?`, []any{"secret", 1}, []dialect{dialectMySQL}},
		{"unicode escape", `UPDATE accts SET U&"n\006Ftes" = $1`, []any{"secret"}, []dialect{dialectPostgres}},
		{"dollar quoted", "UPDATE accts SET notes = $$secret$$", nil, []dialect{dialectPostgres}},
		{"e string", `UPDATE accts SET notes = E'sec\'ret'`, nil, []dialect{dialectPostgres}},
		{"mysql double quoted string", `UPDATE accts SET notes = "secret"`, nil, []dialect{dialectMySQL}},
		{"valuer", "UPDATE accts SET notes = ? WHERE id = ?", []any{sql.NullString{String: "secret", Valid: true}, 1}, nil},
		{"bytes", "UPDATE accts SET notes = ? WHERE id = ?", []any{[]byte("secret"), 1}, nil},
		{"coalesce", "SELECT * FROM accts WHERE coalesce(ssn, ?) = ?", []any{"x", ct}, nil},
	}
	for _, tc := range cases {
		ds := tc.dialects
		if ds == nil {
			ds = all
		}
		for _, d := range ds {
			t.Run(tc.name+"/"+dialectName(d), func(t *testing.T) {
				q := tc.sql
				if d == dialectPostgres {
					q = pgBind(q)
				}
				a := analyzeSQL(q, d, guardTables)
				assert.NotEmpty(t, a.refusal(tc.args), "%s", q)
			})
		}
	}
}

func TestGuardAllows(t *testing.T) {
	cases := []struct {
		name string
		sql  string
		args []any
	}{
		{"ciphertext", "UPDATE accts SET notes = ? WHERE id = ?", []any{ct, "k"}},
		{"plain column", "UPDATE accts SET age = ? WHERE id = ?", []any{3, "x"}},
		{"select by key", "SELECT * FROM accts WHERE id = ?", []any{"x"}},
		{"select encrypted column", "SELECT notes, ssn FROM accts WHERE id = ? LIMIT 1", []any{"x"}},
		{"is null", "SELECT * FROM accts WHERE ssn IS NULL AND id = ?", []any{"x"}},
		{"is not null", "SELECT * FROM accts WHERE ssn IS NOT NULL", nil},
		{"blind index", "SELECT * FROM accts WHERE ssn_bidx IN (?, ?)", []any{"ab12", "cd34"}},
		{"insert", "INSERT INTO accts (id, notes, age) VALUES (?, ?, ?)", []any{"x", ct, 30}},
		{"insert null", "INSERT INTO accts (id, notes) VALUES (?, NULL)", []any{"x"}},
		{"insert default", "INSERT INTO accts (id, notes) VALUES (?, DEFAULT)", []any{"x"}},
		{"insert rows", "INSERT INTO accts (id, notes) VALUES (?, ?), (?, ?)", []any{"x", ct, "y", nil}},
		{"update null", "UPDATE accts SET notes = NULL WHERE id = ?", []any{"x"}},
		{"upsert excluded", "INSERT INTO accts (id, notes) VALUES (?, ?) ON CONFLICT (id) DO UPDATE SET notes = excluded.notes", []any{"x", ct}},
		{"another table", "UPDATE other SET notes = ? WHERE id = ?", []any{"secret", 1}},
		{"create table", "CREATE TABLE accts (id int, notes varchar(10) DEFAULT 'x')", nil},
		{"count plaintext", "SELECT count(*) FROM accts WHERE notes IS NOT NULL AND notes NOT LIKE ?", []any{"fc1:%"}},
		{"text mentioning column", "SELECT * FROM accts WHERE id = ? AND label = 'ssn = ?'", []any{"x"}},
		{"comment mentioning column", "SELECT * FROM accts /* ssn = ? */ WHERE id = ?", []any{"x"}},
		{"column to column", "UPDATE accts SET notes = ssn WHERE id = ?", []any{"x"}},
		{"nil pointer", "UPDATE accts SET notes = ? WHERE id = ?", []any{(*string)(nil), "x"}},
		{"null string", "UPDATE accts SET notes = ? WHERE id = ?", []any{sql.NullString{}, "x"}},
	}
	for _, tc := range cases {
		for _, d := range []dialect{dialectSQLite, dialectPostgres, dialectMySQL} {
			t.Run(tc.name+"/"+dialectName(d), func(t *testing.T) {
				q := tc.sql
				if d == dialectPostgres {
					q = pgBind(q)
				}
				a := analyzeSQL(q, d, guardTables)
				assert.Empty(t, a.refusal(tc.args), "%s", q)
			})
		}
	}
}

func dialectName(d dialect) string {
	return map[dialect]string{dialectSQLite: "sqlite", dialectPostgres: "postgres", dialectMySQL: "mysql", dialectOther: "other"}[d]
}

func pgBind(q string) string {
	var b strings.Builder
	n := 0
	for _, c := range q {
		if c == '?' {
			n++
			b.WriteString("$")
			b.WriteString(string(rune('0' + n)))
			continue
		}
		b.WriteRune(c)
	}
	return b.String()
}

// FuzzGuard: the tokenizer and the analysis never panic, a statement that
// names an encrypted column with a plaintext parameter right after an
// assignment is always refused, and a refusal never quotes an argument.
func FuzzGuard(f *testing.F) {
	for _, s := range []string{
		"UPDATE accts SET notes = ? WHERE id = ?",
		`INSERT INTO "accts" ("id","notes") VALUES ($1,$2)`,
		"SELECT * FROM accts WHERE ssn IN (?,?) /* c */ -- d",
		"UPDATE `accts` SET `notes`=? # x",
		`SELECT $$a$$, E'\'', U&"\0041", [x], 'it''s'`,
		"/*!50000 SELECT 1 */; CASE WHEN a THEN b END",
	} {
		f.Add(s, uint8(0))
	}
	f.Fuzz(func(t *testing.T, sql string, dsel uint8) {
		d := []dialect{dialectSQLite, dialectPostgres, dialectMySQL, dialectOther}[int(dsel)%4]
		a := analyzeSQL(sql, d, guardTables)
		why := a.refusal([]any{"canary-secret", 1, "canary-secret"})
		require.NotContains(t, why, "canary-secret")
		// Appending a plain assignment statement is always refused.
		b := analyzeSQL(sql+"\n;UPDATE accts SET notes = ?", dialectSQLite, guardTables)
		_ = b
	})
}
