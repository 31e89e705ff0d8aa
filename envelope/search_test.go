package envelope_test

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fieldcrypt/fieldcrypt/envelope"
	"github.com/fieldcrypt/fieldcrypt/envelope/envelopetest"
)

func email(row string) envelope.Binding {
	return envelope.Binding{Class: envelope.High, Table: "users", Column: "email", Row: row}
}

func TestDeterministicEqualityAndBinding(t *testing.T) {
	keys := envelopetest.New()
	e := envelope.New(keys)
	a, err := e.SealDeterministic(ctx, email("1"), []byte("a@example.com"))
	require.NoError(t, err)
	b, err := e.SealDeterministic(ctx, email("2"), []byte("a@example.com"))
	require.NoError(t, err)
	assert.Equal(t, a, b, "equal values in one column must give equal ciphertexts, whatever the row")
	c, err := e.SealDeterministic(ctx, email("1"), []byte("b@example.com"))
	require.NoError(t, err)
	assert.NotEqual(t, a, c)
	other := email("1")
	other.Column = "backup_email"
	d, err := e.SealDeterministic(ctx, other, []byte("a@example.com"))
	require.NoError(t, err)
	assert.NotEqual(t, a, d, "columns have separate keys")
	_, err = e.Open(ctx, other, a)
	require.ErrorIs(t, err, envelope.ErrAuthentication)

	pt, err := e.Open(ctx, email("9"), a)
	require.NoError(t, err)
	assert.Equal(t, "a@example.com", string(pt))
	assert.Len(t, a, len("a@example.com")+envelope.Overhead(envelope.SuiteDeterministic, 1))

	h, err := envelope.Inspect(a)
	require.NoError(t, err)
	assert.Equal(t, envelope.SuiteDeterministic, h.Suite)

	_, err = e.Rewrap(ctx, email("1"), a)
	require.ErrorIs(t, err, envelope.ErrInvalidInput)
}

func TestDeterministicSurvivesPrimaryRotation(t *testing.T) {
	keys := envelopetest.New()
	e := envelope.New(keys)
	before, err := e.SealDeterministic(ctx, email(""), []byte("x@example.com"))
	require.NoError(t, err)
	keys.Rotate(email("").Scope())
	after, err := e.SealDeterministic(ctx, email(""), []byte("x@example.com"))
	require.NoError(t, err)
	assert.Equal(t, before, after, "rotating the primary KEK must not change deterministic values")

	// A search-key rotation changes new values; candidates cover both.
	keys.RotateSearch(email("").Scope())
	newer, err := e.SealDeterministic(ctx, email(""), []byte("x@example.com"))
	require.NoError(t, err)
	assert.NotEqual(t, before, newer)
	cands, err := e.DeterministicCandidates(ctx, email(""), []byte("x@example.com"))
	require.NoError(t, err)
	require.Len(t, cands, 2)
	assert.Equal(t, newer, cands[0])
	assert.Equal(t, before, cands[1])
	// Reencrypt moves an old value to the newest search key.
	moved, err := e.Reencrypt(ctx, email(""), before)
	require.NoError(t, err)
	assert.Equal(t, newer, moved)
}

func TestBlindIndex(t *testing.T) {
	keys := envelopetest.New()
	e := envelope.New(keys)
	ssn := envelope.Binding{Class: envelope.Critical, Table: "patients", Column: "ssn"}
	bi := envelope.BlindIndex{}
	x1, err := e.ComputeBlindIndex(ctx, ssn, bi, []byte("123-45-6789"))
	require.NoError(t, err)
	assert.Len(t, x1, envelope.DefaultBlindIndexSize)
	x2, err := e.ComputeBlindIndex(ctx, ssn, bi, []byte("123-45-6789"))
	require.NoError(t, err)
	assert.Equal(t, x1, x2)
	y, err := e.ComputeBlindIndex(ctx, ssn, bi, []byte("123-45-6780"))
	require.NoError(t, err)
	assert.NotEqual(t, x1, y)

	short, err := e.ComputeBlindIndex(ctx, ssn, envelope.BlindIndex{Size: 4}, []byte("123-45-6789"))
	require.NoError(t, err)
	assert.Len(t, short, 4)
	named, err := e.ComputeBlindIndex(ctx, ssn, envelope.BlindIndex{Name: "ssn_last4"}, []byte("123-45-6789"))
	require.NoError(t, err)
	assert.NotEqual(t, x1, named, "index names separate keys")

	slow, err := e.ComputeBlindIndex(ctx, ssn, envelope.BlindIndex{Argon2: &envelope.Argon2Params{Time: 5, MemoryKiB: envelope.MinArgon2MemoryKiB, Threads: 1}}, []byte("1970-01-01"))
	require.NoError(t, err)
	slow2, err := e.ComputeBlindIndex(ctx, ssn, envelope.BlindIndex{Argon2: &envelope.Argon2Params{Time: 5, MemoryKiB: envelope.MinArgon2MemoryKiB, Threads: 1}}, []byte("1970-01-01"))
	require.NoError(t, err)
	assert.Equal(t, slow, slow2)

	for _, bad := range []envelope.BlindIndex{{Size: 3}, {Size: 33}, {Argon2: &envelope.Argon2Params{}}} {
		_, err := e.ComputeBlindIndex(ctx, ssn, bad, []byte("v"))
		require.ErrorIs(t, err, envelope.ErrInvalidInput)
	}

	keys.Rotate(ssn.Scope())
	x3, err := e.ComputeBlindIndex(ctx, ssn, bi, []byte("123-45-6789"))
	require.NoError(t, err)
	assert.Equal(t, x1, x3, "rotating the primary KEK must not change blind indexes")
	keys.RotateSearch(ssn.Scope())
	cands, err := e.BlindIndexCandidates(ctx, ssn, bi, []byte("123-45-6789"))
	require.NoError(t, err)
	require.Len(t, cands, 2)
	assert.Equal(t, x1, cands[1])
	assert.NotEqual(t, x1, cands[0])
}

func TestSearchErrors(t *testing.T) {
	e := envelope.New(envelopetest.New())
	_, err := e.ComputeBlindIndex(ctx, envelope.Binding{Class: envelope.Public, Table: "t", Column: "c"}, envelope.BlindIndex{}, nil)
	require.True(t, errors.Is(err, envelope.ErrInvalidInput))
}

func TestArgon2MinimumIsOWASPs(t *testing.T) {
	e := envelope.New(envelopetest.New())
	b := envelope.Binding{Class: envelope.Critical, Table: "patients", Column: "dob"}
	ok := []envelope.Argon2Params{
		envelope.OWASPArgon2,
		{MemoryKiB: 47104, Time: 1, Threads: 1},
		{MemoryKiB: 19456, Time: 2, Threads: 1},
		{MemoryKiB: 12288, Time: 3, Threads: 1},
		{MemoryKiB: 9216, Time: 4, Threads: 1},
		{MemoryKiB: 7168, Time: 5, Threads: 1},
	}
	for _, a := range ok {
		t.Run(fmt.Sprintf("accept m=%d t=%d", a.MemoryKiB, a.Time), func(t *testing.T) {
			_, err := e.ComputeBlindIndex(ctx, b, envelope.BlindIndex{Argon2: &a}, []byte("1970-01-01"))
			require.NoError(t, err)
		})
	}
	bad := []envelope.Argon2Params{
		{},
		{MemoryKiB: 64, Time: 1, Threads: 1},
		{MemoryKiB: 35839, Time: 1, Threads: 1}, // m*t just short
		{MemoryKiB: 11946, Time: 3, Threads: 1},
		{MemoryKiB: 7167, Time: 100, Threads: 1}, // memory below 7 MiB, whatever the passes
		{MemoryKiB: 7168, Time: 4, Threads: 1},
		{MemoryKiB: 1 << 20, Time: 0, Threads: 1},
		{MemoryKiB: 19456, Time: 2, Threads: 0},
	}
	for _, a := range bad {
		t.Run(fmt.Sprintf("refuse m=%d t=%d p=%d", a.MemoryKiB, a.Time, a.Threads), func(t *testing.T) {
			_, err := e.ComputeBlindIndex(ctx, b, envelope.BlindIndex{Argon2: &a}, []byte("1970-01-01"))
			require.ErrorIs(t, err, envelope.ErrInvalidInput)
			assert.NotContains(t, err.Error(), "1970-01-01")
		})
	}
}

// TestDerivedKeysConcurrently: many goroutines derive search keys for
// distinct columns at once (each first use copies the KEK's map of derived
// keys) and get what a single goroutine gets. Run under -race.
func TestDerivedKeysConcurrently(t *testing.T) {
	raw := bytes.Repeat([]byte{0x5a}, envelope.KEKSize)
	ref := envelope.KEKRef{Class: envelope.Moderate, Version: 1}
	kA, err := envelope.NewKEK(ref, raw)
	require.NoError(t, err)
	kB, err := envelope.NewKEK(ref, raw)
	require.NoError(t, err)
	// Two KEKs of the same bytes, each with its own cache: one derives
	// concurrently, the other serially.
	concurrent, serial := envelope.New(staticSource{kA}), envelope.New(staticSource{kB})
	const columns = 40
	col := func(i int) envelope.Binding {
		return envelope.Binding{Class: envelope.Moderate, Table: "t", Column: fmt.Sprintf("c%d", i)}
	}
	got, gotDet := make([][]byte, columns), make([][]byte, columns)
	var wg sync.WaitGroup
	for i := range columns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var err error
			got[i], err = concurrent.ComputeBlindIndex(ctx, col(i), envelope.BlindIndex{}, []byte("v"))
			assert.NoError(t, err)
			gotDet[i], err = concurrent.SealDeterministic(ctx, col(i), []byte("v"))
			assert.NoError(t, err)
		}()
	}
	wg.Wait()
	for i := range columns {
		want, err := serial.ComputeBlindIndex(ctx, col(i), envelope.BlindIndex{}, []byte("v"))
		require.NoError(t, err)
		assert.Equal(t, want, got[i])
		wantDet, err := serial.SealDeterministic(ctx, col(i), []byte("v"))
		require.NoError(t, err)
		assert.Equal(t, wantDet, gotDet[i])
		if i > 0 {
			assert.NotEqual(t, got[0], got[i], "each column has its own key")
		}
	}
}
