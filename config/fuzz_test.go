package config

import (
	"bytes"
	"reflect"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// dsnPassword returns the password a database URL carries, found as URL
// syntax defines it (the userinfo ends at the last '@' of the authority),
// independently of ParseDSN.
func dsnPassword(raw string) string {
	_, rest, ok := strings.Cut(raw, "://")
	if !ok {
		rest = raw
	}
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		rest = rest[:i]
	}
	at := strings.LastIndex(rest, "@")
	if at < 0 {
		return ""
	}
	_, pw, _ := strings.Cut(rest[:at], ":")
	return pw
}

// leaks reports whether s shows a password of at least 4 bytes (shorter
// ones occur in any text by chance).
func leaks(s, pw string) bool { return len(pw) >= 4 && strings.Contains(s, pw) }

// FuzzParseDSN: ParseDSN never panics, never shows the password in an
// error or in Redacted, and what it accepts is one of the three dialects.
//
//	go test ./config -run '^$' -fuzz FuzzParseDSN -fuzztime 30s
func FuzzParseDSN(f *testing.F) {
	for _, s := range []string{
		"sqlite://data/app.db", "sqlite:///abs/app.db?_pragma=foreign_keys(1)", "sqlite://",
		"postgres://app:sekrit@db:5432/app?sslmode=require", "postgresql://app@db/app", "postgres://u:p@ss%zz@h/db",
		"mysql://app:sekrit@db:3307/app?tls=true", "mariadb://app@127.0.0.1:3306/app?socket=/run/mysqld.sock",
		"mysql://u:sekrit@h", "mysql://u:sekrit@h:port/db", "oracle://u:sekrit@h/db", "u:sekrit@tcp(h)/db", "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		pw := dsnPassword(raw)
		d, err := ParseDSN(raw, "/base")
		if err != nil {
			if leaks(err.Error(), pw) {
				t.Fatalf("error shows the password: %v", err)
			}
			return
		}
		switch d.Dialect {
		case "sqlite":
			if d.Path == "" {
				t.Fatalf("sqlite DSN without a path")
			}
		case "postgres", "mysql":
		default:
			t.Fatalf("unknown dialect %q", d.Dialect)
		}
		if leaks(d.Redacted, pw) {
			t.Fatalf("Redacted shows the password: %q", d.Redacted)
		}
		if leaks(d.Redact("connect failed: "+d.Driver), d.password) {
			t.Fatalf("Redact leaves the password in a driver error")
		}
	})
}

// normalize makes empty and nil collections equal, as YAML's omitempty
// does.
func normalize(c *Config) {
	if len(c.Classes) == 0 {
		c.Classes = nil
	}
	if len(c.Columns) == 0 {
		c.Columns = nil
	}
}

// FuzzConfigYAML: the configuration decoder never panics; a configuration
// it accepts is written by WriteFile's encoder and read back
// unchanged; Validate never panics and never shows the database password.
//
//	go test ./config -run '^$' -fuzz FuzzConfigYAML -fuzztime 30s
func FuzzConfigYAML(f *testing.F) {
	for _, s := range []string{
		"", "keyring: keys.json\ndatabase: sqlite://app.db\n",
		"database: postgres://app:sekrit@db/app\nclasses:\n  critical:\n    master_key: local://dev.key\ncolumns:\n  - table: patients\n    column: ssn\n    class: critical\n    row_bound: true\n",
		"classes:\n  high:\n    master_key: gcp-kms://projects/p/locations/l/keyRings/r/cryptoKeys/k\n    tenant_scoped: true\n",
		"columns: [{table: t, column: c, class: low, mode: deterministic, encoding: binary}]\n",
		"unknown_field: 1\n", "classes: {}\ncolumns: []\n", "cache_ttl: 5m\nmax_age: 1h\n", "database: [\n", "- a\n- b\n",
		"audit_log: \"\\u0000\"\n", "tenant: &a x\nactor: *a\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var cfg Config
		if err := decodeConfig(data, &cfg); err != nil {
			return
		}
		normalize(&cfg)
		var buf bytes.Buffer
		enc := yaml.NewEncoder(&buf)
		enc.SetIndent(2)
		if err := enc.Encode(&cfg); err != nil {
			t.Fatalf("an accepted configuration does not encode: %v", err)
		}
		var again Config
		if err := decodeConfig(buf.Bytes(), &again); err != nil {
			t.Fatalf("the encoded configuration does not decode: %v\n%s", err, buf.Bytes())
		}
		normalize(&again)
		if !reflect.DeepEqual(cfg, again) {
			t.Fatalf("configuration does not round-trip:\n%#v\n%#v", cfg, again)
		}
		cfg.BaseDir = "/base"
		if err := cfg.Validate(false); err != nil && leaks(err.Error(), dsnPassword(cfg.Database)) {
			t.Fatalf("Validate shows the database password: %v", err)
		}
		if leaks(cfg.Redacted().Database, dsnPassword(cfg.Database)) {
			t.Fatalf("Redacted shows the database password")
		}
	})
}
