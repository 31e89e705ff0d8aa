package reencrypt

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"gorm.io/driver/mysql"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/fieldcrypt/fieldcrypt/envelope"
	"github.com/fieldcrypt/fieldcrypt/envelope/envelopetest"
	"github.com/fieldcrypt/fieldcrypt/internal/testsvc"
)

var scope = envelope.Scope{Class: envelope.High}

func dialectName(db *gorm.DB) string { return db.Dialector.Name() }

// createTable makes items(id, val, tenant) with a binary or text val.
func createTable(t testing.TB, db *gorm.DB, name string, text bool) {
	t.Helper()
	var typ string
	switch dialectName(db) {
	case "postgres":
		typ = "BYTEA"
		if text {
			typ = "TEXT"
		}
	case "mysql":
		typ = "LONGBLOB"
		if text {
			typ = "TEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci"
		}
	default:
		typ = "BLOB"
		if text {
			typ = "TEXT"
		}
	}
	require.NoError(t, db.Exec(fmt.Sprintf("CREATE TABLE %s (id BIGINT NOT NULL PRIMARY KEY, val %s NULL, tenant VARCHAR(64) NULL)", name, typ)).Error)
}

func testColumn(name string, text bool) Column {
	return Column{Table: name, PK: "id", Column: "val", Class: envelope.High, Text: text}
}

func binding(col Column, id int64) envelope.Binding {
	return envelope.Binding{Class: col.Class, Tenant: col.Tenant, Table: col.Table, Column: col.Column, Row: envelope.RowKey(id)}
}

func plain(id int64) string { return fmt.Sprintf("secret-value-%06d", id) }

// seed inserts n rows (ids 1..n). kind(id) picks: "ct" sealed (row-bound),
// "pt" plaintext, "null".
func seed(t testing.TB, db *gorm.DB, env *envelope.Envelope, col Column, n int, kind func(id int64) string) {
	t.Helper()
	ctx := context.Background()
	const per = 200
	for start := int64(1); start <= int64(n); start += per {
		var (
			ph   []string
			args []any
		)
		for id := start; id < start+per && id <= int64(n); id++ {
			var v any
			switch kind(id) {
			case "null":
				v = nil
			case "pt":
				v = valueArg(col, []byte(plain(id)))
			default:
				ct, err := env.Seal(ctx, binding(col, id), []byte(plain(id)))
				require.NoError(t, err)
				v = encodeArg(col, ct)
			}
			ph = append(ph, "(?, ?)")
			args = append(args, id, v)
		}
		require.NoError(t, db.Exec("INSERT INTO "+col.Table+" (id, val) VALUES "+strings.Join(ph, ","), args...).Error)
	}
}

func valueArg(col Column, b []byte) any {
	if col.Text {
		return string(b)
	}
	return b
}

func encodeArg(col Column, ct []byte) any {
	if col.Text {
		return envelope.EncodeText(ct)
	}
	return ct
}

// values reads id -> raw value (nil for NULL).
func values(t testing.TB, db *gorm.DB, col Column) map[int64][]byte {
	t.Helper()
	rows, err := db.Raw("SELECT id, val FROM " + col.Table + " ORDER BY id").Rows()
	require.NoError(t, err)
	defer rows.Close()
	out := map[int64][]byte{}
	for rows.Next() {
		var id int64
		var v any
		require.NoError(t, rows.Scan(&id, &v))
		out[id] = append([]byte(nil), valBytes(v)...)
	}
	require.NoError(t, rows.Err())
	return out
}

// openValue decrypts one stored value, asserting its KEK version.
func openValue(t testing.TB, env *envelope.Envelope, col Column, id int64, v []byte) (string, envelope.Header) {
	t.Helper()
	h, err := envelope.Inspect(v)
	require.NoError(t, err, "row %d", id)
	b := binding(col, id)
	if !h.RowBound {
		b.Row = ""
	}
	pt, err := env.Open(context.Background(), b, v)
	require.NoError(t, err, "row %d", id)
	return string(pt), h
}

func newKeys() (*envelopetest.Keys, *envelope.Envelope) {
	k := envelopetest.New()
	return k, envelope.New(k)
}

// secondPool opens another connection pool on the database behind dsn (the
// testsvc URL form).
func secondPool(t testing.TB, dsn string) *gorm.DB {
	t.Helper()
	cfg := &gorm.Config{Logger: logger.Default.LogMode(logger.Silent)}
	var (
		db  *gorm.DB
		err error
	)
	switch {
	case strings.HasPrefix(dsn, "postgres://"):
		db, err = gorm.Open(postgres.Open(dsn), cfg)
	case strings.HasPrefix(dsn, "mysql://"):
		db, err = gorm.Open(mysql.Open(mysqlDSN(dsn)), cfg)
	default:
		t.Fatalf("no second pool for %s", dsn)
	}
	require.NoError(t, err)
	t.Cleanup(func() {
		if s, err := db.DB(); err == nil {
			_ = s.Close()
		}
	})
	return db
}

// mysqlDSN turns mysql://user:pass@host:port/db?x into the driver's form.
func mysqlDSN(u string) string {
	u = strings.TrimPrefix(u, "mysql://")
	at := strings.LastIndex(u, "@")
	cred, rest := u[:at], u[at+1:]
	slash := strings.Index(rest, "/")
	return cred + "@tcp(" + rest[:slash] + ")" + rest[slash:]
}

func openDB(t testing.TB, d testsvc.Dialect) (*gorm.DB, string) {
	t.Helper()
	return testsvc.OpenDSN(t, d)
}

// planJob plans opts.JobID for col as Run would (schema, job and chunks)
// and returns the runner, so a test can tamper with the chunks first.
func planJob(t *testing.T, db *gorm.DB, env *envelope.Envelope, col Column, opts Options) *runner {
	t.Helper()
	ctx := context.Background()
	require.NoError(t, opts.defaults(col))
	r, err := newRunner(ctx, db, env, col, opts)
	require.NoError(t, err)
	require.NoError(t, ensureSchema(ctx, r.db, r.d))
	_, err = r.plan(ctx, true)
	require.NoError(t, err)
	return r
}
