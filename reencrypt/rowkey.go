package reencrypt

import "github.com/fieldcrypt/fieldcrypt/envelope"

// RowKey renders a primary key as the row key of envelope.Binding.Row. It
// is envelope.RowKey, the rendering package gormcrypt uses too: integers in
// decimal, strings as they are, UUIDs (uuid.UUID or a driver's [16]byte) in
// canonical lowercase 8-4-4-4-12 form.
func RowKey(pk any) string { return envelope.RowKey(pk) }
