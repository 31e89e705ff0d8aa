package cli

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/fieldcrypt/fieldcrypt/config"
)

func TestValidateNamesTheEntry(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string
	}{
		{"unknown field", "keyring: a\nclasess: {}\n", []string{"clasess"}},
		{"bad class name", "classes:\n  secret: {master_key: local://a}\n", []string{`class "secret"`}},
		{"shared master key", "classes:\n  critical: {master_key: local://a}\n  high: {master_key: local://a}\n", []string{"also the master key"}},
		{"bad URI", "classes:\n  critical: {master_key: s3://bucket/key}\n", []string{"critical", "unknown scheme"}},
		{"column without master key", "classes:\n  critical: {master_key: local://a}\ncolumns:\n  - {table: t, column: c, class: high}\n", []string{"columns[0] (t.c)", "no master key"}},
		{"bad column mode", "classes:\n  critical: {master_key: local://a}\ncolumns:\n  - {table: t, column: c, class: critical, mode: fancy}\n", []string{"columns[0] (t.c)", `mode "fancy"`}},
		{"deterministic row-bound", "classes:\n  critical: {master_key: local://a}\ncolumns:\n  - {table: t, column: c, class: critical, mode: deterministic, row_bound: true}\n", []string{"columns[0]", "row_bound"}},
		{"bad identifier", "classes:\n  critical: {master_key: local://a}\ncolumns:\n  - {table: \"t; drop\", column: c, class: critical}\n", []string{"table \"t; drop\""}},
		{"duplicate column", "classes:\n  critical: {master_key: local://a}\ncolumns:\n  - {table: t, column: c, class: critical}\n  - {table: t, column: c, class: critical}\n", []string{"columns[1] (t.c): listed twice"}},
		{"bad database", "database: oracle://x\nclasses:\n  critical: {master_key: local://a}\n", []string{"database", "oracle"}},
		{"bad duration", "cache_ttl: soon\nclasses:\n  critical: {master_key: local://a}\n", []string{"cache_ttl"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			e.write("fieldcrypt.yaml", tt.yaml)
			r := e.code(ExitUsage, "config", "validate")
			for _, w := range tt.want {
				assert.Contains(t, r.stderr, w)
			}
		})
	}
}

func TestConfigShowRedactsPassword(t *testing.T) {
	e := newEnv(t)
	e.vars[config.EnvDatabase] = "postgres://app:hunter2-secret@db.internal:5432/app?sslmode=require"
	for _, format := range []string{"text", "json"} {
		r := e.ok("config", "show", "-o", format)
		assert.NotContains(t, r.all(), "hunter2-secret")
		assert.Contains(t, r.stdout, "db.internal")
	}
}

func TestPreviousMasterKeyListedTwice(t *testing.T) {
	e := newEnv(t)
	e.write("fieldcrypt.yaml", "classes:\n  low: {master_key: local:///k/low.key, previous_master_keys: [local:///k/low.key]}\n")
	r := e.code(ExitUsage, "config", "validate")
	assert.Contains(t, r.stderr, "listed twice")
}

func TestConnectErrorHidesPassword(t *testing.T) {
	e := newEnv(t)
	e.vars[config.EnvDatabase] = "mysql://app:sekrit-pw@127.0.0.1:1/app?timeout=2s"
	e.vars["FIELDCRYPT_MASTER_KEY_LOW"] = "local://low.key"
	r := e.code(ExitError, "keys", "list")
	assert.NotContains(t, r.all(), "sekrit-pw")
	assert.Contains(t, r.stderr, "xxxxx")
}
