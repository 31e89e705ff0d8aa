package config

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/glebarez/sqlite"
	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5/pgconn"
	gormmysql "gorm.io/driver/mysql"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// DSN is a parsed database URL.
type DSN struct {
	Dialect  string // "sqlite", "postgres", "mysql"
	Driver   string // the DSN in the driver's own syntax; may hold a password: never print
	Redacted string // the URL with the password masked: safe to print
	Path     string // sqlite only: the database file
	password string
}

// ParseDSN converts a database URL to its driver form:
//
//	sqlite://PATH                 (relative PATH resolves against base)
//	postgres://user:pass@host:port/db?sslmode=...   (also postgresql://)
//	mysql://user:pass@host:port/db?param=value      (MySQL and MariaDB)
//
// Errors never contain the password.
func ParseDSN(raw, base string) (DSN, error) {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return DSN{}, fmt.Errorf("%q: want sqlite://PATH, postgres://... or mysql://...", RedactDSN(raw))
	}
	switch scheme {
	case "sqlite", "sqlite3":
		path, query, _ := strings.Cut(rest, "?")
		if path == "" {
			return DSN{}, fmt.Errorf("%q: sqlite:// needs a file path", RedactDSN(raw))
		}
		path = ResolvePath(base, path)
		if query == "" {
			query = "_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)"
		}
		return DSN{Dialect: "sqlite", Driver: path + "?" + query, Redacted: "sqlite://" + path, Path: path}, nil
	case "postgres", "postgresql":
		u, err := url.Parse(raw)
		if err != nil {
			return DSN{}, fmt.Errorf("%q: not a valid URL", RedactDSN(raw))
		}
		// An incomplete URL would connect over the local socket as the OS
		// user, to a database of that name: never what a config meant.
		q := u.Query()
		if u.Hostname() == "" && q.Get("host") == "" {
			return DSN{}, fmt.Errorf("%q: postgres:// needs a host (postgres://user:pass@HOST:5432/db)", u.Redacted())
		}
		if strings.TrimPrefix(u.Path, "/") == "" && q.Get("dbname") == "" {
			return DSN{}, fmt.Errorf("%q: postgres:// needs a database name (postgres://user:pass@host:5432/DB)", u.Redacted())
		}
		if _, err := pgconn.ParseConfig(raw); err != nil {
			return DSN{}, fmt.Errorf("%q: not a valid PostgreSQL URL (check the port and the parameters)", u.Redacted())
		}
		pw, _ := u.User.Password()
		return DSN{Dialect: "postgres", Driver: raw, Redacted: u.Redacted(), password: pw}, nil
	case "mysql", "mariadb":
		u, err := url.Parse(raw)
		if err != nil {
			return DSN{}, fmt.Errorf("%q: not a valid URL", RedactDSN(raw))
		}
		c := mysql.NewConfig()
		if u.User != nil {
			c.User = u.User.Username()
			c.Passwd, _ = u.User.Password()
		}
		c.Net = "tcp"
		host := u.Host
		if host == "" {
			host = "127.0.0.1"
		}
		if _, _, err := net.SplitHostPort(host); err != nil {
			host = net.JoinHostPort(host, "3306")
		}
		c.Addr = host
		c.DBName = strings.TrimPrefix(u.Path, "/")
		if c.DBName == "" {
			return DSN{}, fmt.Errorf("%q: mysql:// needs a database name (mysql://user:pass@host:3306/DB)", RedactDSN(raw))
		}
		c.ParseTime = true
		q := u.Query()
		if s := q.Get("socket"); s != "" {
			c.Net, c.Addr = "unix", s
			q.Del("socket")
		}
		q.Del("parseTime")
		c.Params = map[string]string{}
		for k, vs := range q {
			c.Params[k] = vs[len(vs)-1]
		}
		if len(c.Params) == 0 {
			c.Params = nil
		}
		// Validate the parameters by round-tripping through the driver.
		driver := c.FormatDSN()
		if _, err := mysql.ParseDSN(driver); err != nil {
			return DSN{}, fmt.Errorf("%q: bad parameters", RedactDSN(raw))
		}
		return DSN{Dialect: "mysql", Driver: driver, Redacted: u.Redacted(), password: c.Passwd}, nil
	}
	return DSN{}, fmt.Errorf("%q: unknown scheme %q (want sqlite, postgres or mysql)", RedactDSN(raw), scheme)
}

// RedactDSN masks the password of a database URL.
func RedactDSN(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		// Not a URL with a user: mask everything up to the last '@' (a
		// password may contain '@', and drivers split at the last one).
		if i := strings.LastIndex(raw, "@"); i >= 0 {
			if j := strings.Index(raw, "://"); j >= 0 && j < i {
				return raw[:j+3] + "xxxxx" + raw[i:]
			}
			return "xxxxx" + raw[i:]
		}
		return raw
	}
	return u.Redacted()
}

// Redact removes the password from s (an error text, say).
func (d DSN) Redact(s string) string {
	if d.password == "" {
		return s
	}
	s = strings.ReplaceAll(s, d.password, "xxxxx")
	return strings.ReplaceAll(s, url.QueryEscape(d.password), "xxxxx")
}

// OpenDB opens the database through gorm, with gorm's logger silenced (its
// SQL logs could show values).
func OpenDB(ctx context.Context, d DSN) (*gorm.DB, error) {
	var dial gorm.Dialector
	switch d.Dialect {
	case "sqlite":
		dial = sqlite.Open(d.Driver)
	case "postgres":
		dial = postgres.Open(d.Driver)
	case "mysql":
		dial = gormmysql.Open(d.Driver)
	default:
		return nil, invalidf("database: unknown dialect %q", d.Dialect)
	}
	db, err := gorm.Open(dial, &gorm.Config{Logger: logger.Discard, TranslateError: true})
	if err != nil {
		return nil, fmt.Errorf("open database %s: %s", d.Redacted, d.Redact(err.Error()))
	}
	sqlDB, err := db.DB()
	if err != nil {
		return nil, fmt.Errorf("open database %s: %s", d.Redacted, d.Redact(err.Error()))
	}
	pctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := sqlDB.PingContext(pctx); err != nil {
		sqlDB.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("connect to database %s: %s", d.Redacted, d.Redact(err.Error()))
	}
	return db, nil
}

// CloseDB closes the connection pool of db, if any.
func CloseDB(db *gorm.DB) {
	if db == nil {
		return
	}
	if s, err := db.DB(); err == nil {
		_ = s.Close()
	}
}
