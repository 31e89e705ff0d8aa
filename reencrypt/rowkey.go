package reencrypt

import "github.com/fieldcrypt/fieldcrypt/envelope"

// RowKey renders a primary key as the row key of envelope.Binding.Row.
//
// Deprecated: it is envelope.RowKey (envelope.RowKeys for a composite
// key), which gormcrypt and this package bind rows with; kept for one
// release.
func RowKey(pk any) string { return envelope.RowKey(pk) }
