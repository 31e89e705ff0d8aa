package envelope_test

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fieldcrypt/fieldcrypt/envelope"
	"github.com/fieldcrypt/fieldcrypt/envelope/envelopetest"
)

func TestInspectHeader(t *testing.T) {
	ctx := context.Background()
	env := envelope.New(envelopetest.New())
	for _, row := range []string{"", "42"} {
		for _, size := range []int{0, 1, 100, 10000} {
			b := envelope.Binding{Class: envelope.Critical, Table: "t", Column: "c", Row: row}
			ct, err := env.Seal(ctx, b, []byte(strings.Repeat("x", size)))
			require.NoError(t, err)
			want, err := envelope.Inspect(ct)
			require.NoError(t, err)
			for _, form := range [][]byte{ct, []byte(envelope.EncodeText(ct))} {
				got, err := envelope.InspectHeader(form)
				require.NoError(t, err)
				assert.Equal(t, want, got)
				assert.Equal(t, row != "", got.RowBound)
			}
		}
	}
	for _, bad := range []string{"", "fc1:", "fc1:A", "fc1:!!!!", "fc1:AAAA\nAAAA", "plain"} {
		_, err := envelope.InspectHeader([]byte(bad))
		assert.ErrorIs(t, err, envelope.ErrMalformed, "%q", bad)
	}
}

// FuzzInspectHeader: never panics; wherever Inspect reads a header,
// InspectHeader reads the same one.
func FuzzInspectHeader(f *testing.F) {
	env := envelope.New(envelopetest.New())
	ct, _ := env.Seal(context.Background(), envelope.Binding{Class: envelope.High, Table: "t", Column: "c", Row: "1"}, []byte("v"))
	f.Add(ct)
	f.Add([]byte(envelope.EncodeText(ct)))
	f.Add([]byte("fc1:AAAA"))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := envelope.InspectHeader(b)
		if want, werr := envelope.Inspect(b); werr == nil {
			if err != nil || got != want {
				t.Fatalf("Inspect = %+v, InspectHeader = %+v, %v", want, got, err)
			}
		}
	})
}
