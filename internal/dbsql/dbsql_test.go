package dbsql

import (
	"errors"
	"fmt"
	"testing"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"
)

// TestErrorClassification: one classifier, by driver codes where the
// driver has them.
func TestErrorClassification(t *testing.T) {
	wrap := func(err error) error { return fmt.Errorf("swap: %w", err) }
	tests := []struct {
		name             string
		err              error
		retryable, dupes bool
	}{
		{"nil", nil, false, false},
		{"pg serialization", wrap(&pgconn.PgError{Code: "40001"}), true, false},
		{"pg deadlock", wrap(&pgconn.PgError{Code: "40P01"}), true, false},
		{"pg lock not available", &pgconn.PgError{Code: "55P03"}, true, false},
		{"pg unique", &pgconn.PgError{Code: "23505"}, false, true},
		{"pg syntax", &pgconn.PgError{Code: "42601", Message: "deadlock in the text does not count"}, false, false},
		{"mysql deadlock", wrap(&mysql.MySQLError{Number: 1213}), true, false},
		{"mysql lock wait", &mysql.MySQLError{Number: 1205}, true, false},
		{"mysql duplicate", &mysql.MySQLError{Number: 1062}, false, true},
		{"sqlite busy", errors.New("database is locked (5) (SQLITE_BUSY)"), true, false},
		{"sqlite unique", errors.New("constraint failed: UNIQUE constraint failed: t.id (2067)"), false, true},
		{"gorm duplicate", wrap(gorm.ErrDuplicatedKey), false, true},
		{"other", errors.New("connection refused"), false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.retryable, Retryable(tt.err))
			assert.Equal(t, tt.dupes, UniqueViolation(tt.err))
		})
	}
}

func TestKeyText(t *testing.T) {
	one := NewTable(Postgres, "s.items", []string{"id"})
	one.ints[0] = true
	assert.Equal(t, `"s"."items"`, one.Quoted())
	assert.Equal(t, "42", one.Text([]any{int64(42)}))
	k, err := one.Parse("42")
	require.NoError(t, err)
	assert.Equal(t, []any{int64(42)}, k)

	two := NewTable(MySQL, "t", []string{"region", "id"})
	two.ints[1] = true
	key := []any{"eu,\"x\"", int64(7)}
	s := two.Text(key)
	back, err := two.Parse(s)
	require.NoError(t, err)
	assert.Equal(t, key, back)
	_, err = two.Parse("7")
	assert.Error(t, err, "a one-column bound in a two-column table")
	assert.Equal(t, `"eu,\"x\"","7"`, two.RowKey(key))

	s2 := &Buf{D: Postgres}
	two.compare(s2, ">", []any{"a", int64(1)})
	assert.Equal(t, "(`region`, `id`) > ($1, $2)", s2.String())
	s3 := &Buf{D: Postgres, QMarks: true}
	s3.P(1)
	assert.Equal(t, "?", s3.String())
}
