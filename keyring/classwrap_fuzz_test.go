package keyring

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/fieldcrypt/fieldcrypt/envelope"
)

// FuzzUnwrapWithClassKey: whatever bytes a store holds as a tenant KEK
// wrapped by the class key, unwrapping them never panics and, unless they
// are the genuine wrapped KEK, fails as tampering.
func FuzzUnwrapWithClassKey(f *testing.F) {
	e := newEnv(f, nil)
	kr, _ := e.process(testConfig())
	acme := envelope.Scope{Class: envelope.High, Tenant: "acme"}
	_, err := kr.EnsureScope(ctx, acme)
	require.NoError(f, err)
	genuine := rawRead(f, e.store, acme).Records[0].Wrapped
	ck := kr.cachedClassKey(envelope.High)
	require.NotNil(f, ck)
	f.Add(genuine)
	f.Add([]byte{})
	f.Add(make([]byte, classWrappedSize))
	f.Add(append([]byte{}, genuine[:classWrappedSize-1]...))
	f.Fuzz(func(t *testing.T, wrapped []byte) {
		rec := &Record{Version: 1, State: StateActive, WrappedBy: WrapClassKey, Wrapped: wrapped}
		raw, err := kr.unwrapWithClassKey(ctx, ck, ref(envelope.High, "acme", 1), rec)
		if string(wrapped) == string(genuine) {
			require.NoError(t, err)
			require.Len(t, raw, envelope.KEKSize)
			return
		}
		require.ErrorIs(t, err, ErrTampered)
		require.Nil(t, raw)
	})
}
