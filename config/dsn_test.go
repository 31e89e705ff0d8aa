package config

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseDSN(t *testing.T) {
	tests := []struct {
		in, dialect, driver, redacted string
	}{
		{"sqlite://data/app.db", "sqlite", "/base/data/app.db?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)", "sqlite:///base/data/app.db"},
		{"sqlite:///abs/app.db?_pragma=foreign_keys(1)", "sqlite", "/abs/app.db?_pragma=foreign_keys(1)", "sqlite:///abs/app.db"},
		{"postgres://app:pw@db:5432/app?sslmode=require", "postgres", "postgres://app:pw@db:5432/app?sslmode=require", "postgres://app:xxxxx@db:5432/app?sslmode=require"},
		{"postgresql://app@db/app", "postgres", "postgresql://app@db/app", "postgresql://app@db/app"},
		{"mysql://app:pw@db:3307/app?tls=true", "mysql", "app:pw@tcp(db:3307)/app?parseTime=true&tls=true", "mysql://app:xxxxx@db:3307/app?tls=true"},
		{"mysql://app:pw@db/app", "mysql", "app:pw@tcp(db:3306)/app?parseTime=true", "mysql://app:xxxxx@db/app"},
		{"mariadb://app@127.0.0.1:3306/app?socket=/run/mysqld.sock", "mysql", "app@unix(/run/mysqld.sock)/app?parseTime=true", "mariadb://app@127.0.0.1:3306/app?socket=/run/mysqld.sock"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			d, err := ParseDSN(tt.in, "/base")
			require.NoError(t, err)
			assert.Equal(t, tt.dialect, d.Dialect)
			assert.Equal(t, tt.driver, d.Driver)
			assert.Equal(t, tt.redacted, d.Redacted)
		})
	}
}

func TestParseDSNErrorsHidePassword(t *testing.T) {
	for _, in := range []string{"oracle://u:sekrit@h/db", "mysql://u:sekrit@h", "u:sekrit@tcp(h)/db", "mysql://u:sekrit@h:port/db"} {
		t.Run(in, func(t *testing.T) {
			_, err := ParseDSN(in, "")
			require.Error(t, err)
			assert.NotContains(t, err.Error(), "sekrit")
		})
	}
}

func TestConnectErrorHidesPassword(t *testing.T) {
	d, err := ParseDSN("postgres://app:sekrit-pw@127.0.0.1:1/app?sslmode=disable&connect_timeout=2", "")
	require.NoError(t, err)
	_, err = OpenDB(context.Background(), d)
	require.Error(t, err)
	assert.NotContains(t, err.Error(), "sekrit-pw")
}

func TestRedactDSNMasksPasswordsWithAt(t *testing.T) {
	for _, in := range []string{"u:p@ssw0rd@tcp(h)/db", "postgres://u:p@ssw0rd@h/db", "mysql://u:p@ssw0rd@h:port/db", ":@ssw0rd@"} {
		t.Run(in, func(t *testing.T) {
			assert.NotContains(t, RedactDSN(in), "ssw0rd")
			_, err := ParseDSN(in, "")
			if err != nil {
				assert.NotContains(t, err.Error(), "ssw0rd")
			}
		})
	}
}
