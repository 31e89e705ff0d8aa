// Package dbsql is the one place fieldcrypt deals with SQL dialects: how
// identifiers are quoted and placeholders written, which errors mean "try
// again", and the walk every bulk operation makes over a table: batches in
// primary-key order (keys of one column or several), then one
// compare-and-swap statement per batch, so that a concurrent write is
// never overwritten.
//
// reencrypt (runs and census) and gormcrypt (blind-index rebuilds) use it;
// keyring's store uses its error classification. Only identifiers that
// callers validated reach it: it quotes, it does not sanitize.
package dbsql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5/pgconn"
	"gorm.io/gorm"
)

// Dialect is a supported database.
type Dialect int

// Dialects.
const (
	SQLite Dialect = iota + 1
	Postgres
	MySQL // and MariaDB
)

// ErrUnsupported means the database is none of the supported dialects.
var ErrUnsupported = errors.New("unsupported database (want postgres, mysql or sqlite)")

// Of returns the dialect of a GORM connection.
func Of(db *gorm.DB) (Dialect, error) {
	switch db.Dialector.Name() {
	case "sqlite":
		return SQLite, nil
	case "postgres":
		return Postgres, nil
	case "mysql":
		return MySQL, nil
	}
	return 0, fmt.Errorf("%w: %q", ErrUnsupported, db.Dialector.Name())
}

// Quote quotes an identifier (schema.table is quoted part by part).
func (d Dialect) Quote(name string) string {
	parts := strings.Split(name, ".")
	for i, p := range parts {
		if d == MySQL {
			parts[i] = "`" + p + "`"
		} else {
			parts[i] = `"` + p + `"`
		}
	}
	return strings.Join(parts, ".")
}

// Buf builds a statement with the dialect's placeholders ($n on
// PostgreSQL, ? elsewhere; ? everywhere with QMarks, for a layer such as
// GORM that rewrites them itself).
type Buf struct {
	D      Dialect
	QMarks bool
	b      strings.Builder
	Args   []any
}

// W writes SQL text.
func (s *Buf) W(parts ...string) *Buf {
	for _, p := range parts {
		s.b.WriteString(p)
	}
	return s
}

// P writes a placeholder for v.
func (s *Buf) P(v any) *Buf {
	s.Args = append(s.Args, v)
	if s.D == Postgres && !s.QMarks {
		s.b.WriteByte('$')
		s.b.WriteString(strconv.Itoa(len(s.Args)))
	} else {
		s.b.WriteByte('?')
	}
	return s
}

// String returns the statement.
func (s *Buf) String() string { return s.b.String() }

// Querier is *sql.DB, *sql.Tx or *sql.Conn (or an adapter over GORM).
type Querier interface {
	QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error)
	ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error)
}

// Retryable reports a transient conflict worth retrying the transaction
// for: a deadlock, a serialization failure, a lock wait timeout, SQLite
// busy. Driver error codes decide where there are any; SQLite's driver
// only has messages.
func Retryable(err error) bool {
	if err == nil {
		return false
	}
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		switch pg.Code {
		case "40001", "40P01", "55P03": // serialization, deadlock, lock not available
			return true
		}
		return false
	}
	var my *mysql.MySQLError
	if errors.As(err, &my) {
		return my.Number == 1213 || my.Number == 1205 // deadlock, lock wait timeout
	}
	msg := strings.ToLower(err.Error())
	return strings.Contains(msg, "database is locked") || strings.Contains(msg, "sqlite_busy") || strings.Contains(msg, "deadlock")
}

// UniqueViolation reports a unique-key violation (another writer inserted
// the same key first).
func UniqueViolation(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, gorm.ErrDuplicatedKey) {
		return true
	}
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		return pg.Code == "23505"
	}
	var my *mysql.MySQLError
	if errors.As(err, &my) {
		return my.Number == 1062
	}
	return strings.Contains(strings.ToLower(err.Error()), "unique constraint failed")
}

// ColumnType returns a PostgreSQL column's type as format_type prints it
// (for casts in VALUES lists); "" on other dialects.
func ColumnType(ctx context.Context, q Querier, d Dialect, table, column string) (string, error) {
	return columnType(ctx, q, &Buf{D: d}, table, column)
}

func columnType(ctx context.Context, q Querier, s *Buf, table, column string) (string, error) {
	if s.D != Postgres {
		return "", nil
	}
	s.W("SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a WHERE a.attrelid = to_regclass(").P(s.D.Quote(table)).
		W(") AND a.attname = ").P(column).W(" AND NOT a.attisdropped")
	rows, err := q.QueryContext(ctx, s.String(), s.Args...)
	if err != nil {
		return "", err
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return "", err
		}
		return "", fmt.Errorf("column %s.%s does not exist", table, column)
	}
	var t string
	if err := rows.Scan(&t); err != nil {
		return "", err
	}
	return t, rows.Err()
}
