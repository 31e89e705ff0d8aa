package cli

import (
	"strings"

	"github.com/fieldcrypt/fieldcrypt/console"
	"github.com/fieldcrypt/fieldcrypt/envelope"
)

// consoleColumns are the configured encrypted columns, as the console
// needs them.
func consoleColumns(cfg *Config) []console.Column {
	out := make([]console.Column, len(cfg.Columns))
	for i, c := range cfg.Columns {
		size := c.BlindIndexSize
		if size == 0 {
			size = envelope.DefaultBlindIndexSize
		}
		out[i] = console.Column{Table: c.Table, Column: c.Column, PK: c.PK, Class: c.ClassValue(), Deterministic: c.Deterministic(),
			BlindIndex: c.BlindIndex, BlindIndexSpec: envelope.BlindIndex{Size: size}, Tenant: cfg.Tenant, TenantColumn: c.TenantColumn, Binary: c.Binary()}
	}
	return out
}

func isEncrypted(cfg *Config, table, column string) bool {
	for _, c := range cfg.Columns {
		if strings.EqualFold(c.Table, table) && strings.EqualFold(c.Column, column) {
			return true
		}
	}
	return false
}
