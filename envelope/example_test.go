package envelope_test

import (
	"context"
	"fmt"

	"github.com/fieldcrypt/fieldcrypt/envelope"
	"github.com/fieldcrypt/fieldcrypt/envelope/envelopetest"
)

// The common case: seal a value for one row of one column, store the text
// form, open it with the same binding.
func Example() {
	ctx := context.Background()
	keys := envelopetest.New() // in an application: a *keyring.Keyring
	e := envelope.New(keys)

	b := envelope.Binding{Class: envelope.Critical, Table: "patients", Column: "ssn", Row: "42"}
	ct, err := e.Seal(ctx, b, []byte("123-45-6789"))
	if err != nil {
		panic(err)
	}
	stored := envelope.EncodeText(ct) // "fc1:..." for a string column

	pt, err := e.Open(ctx, b, []byte(stored))
	if err != nil {
		panic(err)
	}
	fmt.Println(string(pt), len(ct)-len(pt), "bytes of overhead")

	// The same ciphertext copied to another row does not open.
	_, err = e.Open(ctx, envelope.Binding{Class: envelope.Critical, Table: "patients", Column: "ssn", Row: "43"}, ct)
	fmt.Println(err)
	// Output:
	// 123-45-6789 62 bytes of overhead
	// fieldcrypt: open patients.ssn row 43 (KEK critical/v1): authentication failed: value does not authenticate for this table, column, row, class and tenant
}

// Key rotation: Rewrap moves a value to the new primary KEK without
// decrypting it; the data bytes stay as they are.
func ExampleEnvelope_Rewrap() {
	ctx := context.Background()
	keys := envelopetest.New()
	e := envelope.New(keys)
	b := envelope.Binding{Class: envelope.High, Table: "users", Column: "name", Row: "7"}

	ct, _ := e.Seal(ctx, b, []byte("Ada Lovelace"))
	keys.Rotate(b.Scope()) // operator: fieldcrypt keys rotate --class high
	moved, err := e.Rewrap(ctx, b, ct)
	if err != nil {
		panic(err)
	}
	before, _ := envelope.Inspect(ct)
	after, _ := envelope.Inspect(moved)
	fmt.Printf("KEK v%d -> v%d, data unchanged: %v\n", before.KEKVersion, after.KEKVersion, string(ct[46:]) == string(moved[46:]))
	// Output: KEK v1 -> v2, data unchanged: true
}

// Equality search without deterministic encryption: store a blind index
// beside the randomly encrypted value and query the index.
func ExampleEnvelope_ComputeBlindIndex() {
	ctx := context.Background()
	e := envelope.New(envelopetest.New())
	b := envelope.Binding{Class: envelope.Critical, Table: "patients", Column: "ssn"}
	idx := envelope.BlindIndex{Size: 16}

	stored, _ := e.ComputeBlindIndex(ctx, b, idx, []byte("123-45-6789"))
	// At query time: WHERE ssn_bidx IN (candidates...).
	candidates, _ := e.BlindIndexCandidates(ctx, b, idx, []byte("123-45-6789"))
	fmt.Println(len(stored), string(candidates[0]) == string(stored))
	// Output: 16 true
}

// The text stored in a blind-index column: what gormcrypt writes on every
// insert and update, and what the reencrypt engine writes when it
// migrates a column.
func ExampleEnvelope_ComputeBlindIndexText() {
	ctx := context.Background()
	e := envelope.New(envelopetest.New())
	b := envelope.Binding{Class: envelope.Critical, Table: "patients", Column: "ssn"}
	h, _ := e.ComputeBlindIndexText(ctx, b, envelope.BlindIndex{}, []byte("123-45-6789"))
	fmt.Println(len(h))
	// Output: 32
}
