package testsvc

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/glebarez/sqlite"
	"gorm.io/driver/mysql"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// Dialect names a database the suites run on.
type Dialect string

// The three databases every database-backed suite runs against.
const (
	SQLite   Dialect = "sqlite"
	Postgres Dialect = "postgres"
	MySQL    Dialect = "mysql"
)

// Dialects lists all three, SQLite first.
func Dialects() []Dialect { return []Dialect{SQLite, Postgres, MySQL} }

func randomName(prefix string) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// quiet returns a fresh config per connection: gorm.Open stores the
// dialector in the config it is given, so sharing one across dialects makes
// later connections speak the first one's SQL.
func quiet() *gorm.Config { return &gorm.Config{Logger: logger.Default.LogMode(logger.Silent)} }

// Open returns a connection to a fresh, empty database of the given dialect,
// dropped when the test ends. SQLite lives in t.TempDir(). PostgreSQL and
// MariaDB get a database of their own per call, so packages testing in
// parallel never share tables.
func Open(t testing.TB, d Dialect) *gorm.DB {
	t.Helper()
	db, _ := OpenDSN(t, d)
	return db
}

// OpenDSN is Open, also returning the DSN (in the CLI's URL form:
// sqlite://PATH, postgres://..., mysql://...) of the fresh database.
func OpenDSN(t testing.TB, d Dialect) (*gorm.DB, string) {
	t.Helper()
	switch d {
	case SQLite:
		path := filepath.Join(t.TempDir(), "test.db")
		db, err := gorm.Open(sqlite.Open(path+"?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)"), quiet())
		if err != nil {
			t.Fatalf("open sqlite: %v", err)
		}
		t.Cleanup(func() { closeDB(db) })
		return db, "sqlite://" + path
	case Postgres:
		admin, err := gorm.Open(postgres.Open(PostgresDSN()), quiet())
		if err == nil {
			err = ping(admin)
		}
		if err != nil {
			Unavailable(t, "PostgreSQL", err)
		}
		name := randomName("fc_t_")
		if err := admin.Exec("CREATE DATABASE " + name).Error; err != nil {
			t.Fatalf("create postgres database: %v", err)
		}
		dsn := fmt.Sprintf("host=127.0.0.1 port=5432 user=fieldcrypt dbname=%s sslmode=disable", name)
		db, err := gorm.Open(postgres.Open(dsn), quiet())
		if err != nil {
			t.Fatalf("open postgres %s: %v", name, err)
		}
		t.Cleanup(func() {
			closeDB(db)
			admin.Exec("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)")
			closeDB(admin)
		})
		return db, "postgres://fieldcrypt@127.0.0.1:5432/" + name + "?sslmode=disable"
	case MySQL:
		admin, err := gorm.Open(mysql.Open(MySQLDSN()), quiet())
		if err == nil {
			err = ping(admin)
		}
		if err != nil {
			Unavailable(t, "MariaDB", err)
		}
		name := randomName("fc_t_")
		if err := admin.Exec("CREATE DATABASE " + name).Error; err != nil {
			t.Fatalf("create mariadb database: %v", err)
		}
		dsn := fmt.Sprintf("fieldcrypt:fieldcrypt@tcp(127.0.0.1:3306)/%s?parseTime=true", name)
		db, err := gorm.Open(mysql.Open(dsn), quiet())
		if err != nil {
			t.Fatalf("open mariadb %s: %v", name, err)
		}
		t.Cleanup(func() {
			closeDB(db)
			admin.Exec("DROP DATABASE IF EXISTS " + name)
			closeDB(admin)
		})
		return db, "mysql://fieldcrypt:fieldcrypt@127.0.0.1:3306/" + name + "?parseTime=true"
	}
	t.Fatalf("unknown dialect %q", d)
	return nil, ""
}

// Each runs fn as a subtest on a fresh database of every dialect.
func Each(t *testing.T, fn func(t *testing.T, db *gorm.DB)) {
	t.Helper()
	for _, d := range Dialects() {
		t.Run(string(d), func(t *testing.T) { fn(t, Open(t, d)) })
	}
}

func ping(db *gorm.DB) error {
	sqlDB, err := db.DB()
	if err != nil {
		return err
	}
	sqlDB.SetConnMaxIdleTime(time.Minute)
	return sqlDB.Ping()
}

func closeDB(db *gorm.DB) {
	if sqlDB, err := db.DB(); err == nil {
		_ = sqlDB.Close()
	}
}
