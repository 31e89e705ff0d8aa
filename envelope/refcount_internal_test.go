package envelope

import (
	"bytes"
	"context"
	"errors"
	"runtime"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// oneKEK is a KeySource that serves one KEK for everything (package
// envelopetest cannot be imported here: it imports this package).
type oneKEK struct{ k *KEK }

func (s oneKEK) PrimaryKEK(context.Context, Scope) (*KEK, error) { return s.k, nil }
func (s oneKEK) KEK(context.Context, KEKRef) (*KEK, error)       { return s.k, nil }
func (s oneKEK) SearchKEKs(context.Context, Scope) ([]*KEK, error) {
	return []*KEK{s.k}, nil
}

func testKEK(t testing.TB, raw []byte) *KEK {
	t.Helper()
	k, err := NewKEK(KEKRef{Class: Critical, Version: 1}, raw)
	require.NoError(t, err)
	return k
}

func seqBytes(n int, start byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = start + byte(i)
	}
	return b
}

// refs reports how many references k holds right now.
func (k *KEK) refs() int64 { return k.state.Load() / kekRefOne }

// zeroed reports whether every key byte k held was cleared.
func (k *KEK) zeroed() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return !bytes.ContainsFunc(k.key, func(r rune) bool { return r != 0 }) &&
		!bytes.ContainsFunc(k.wrapKey, func(r rune) bool { return r != 0 }) &&
		!bytes.ContainsFunc(k.wrapKeySIV, func(r rune) bool { return r != 0 }) && k.derived.Load() == nil
}

func TestDestroyWaitsForTheLastReference(t *testing.T) {
	k := testKEK(t, seqBytes(KEKSize, 1))
	_, err := k.derive([]byte(labelBlindIndex + "info")) // a derived key to clear too
	require.NoError(t, err)
	require.NoError(t, k.acquire())
	require.NoError(t, k.acquire())
	k.Destroy()
	require.ErrorIs(t, k.usable(), ErrKeyDestroyed)
	require.ErrorIs(t, k.acquire(), ErrKeyDestroyed, "no new reference after Destroy")
	assert.False(t, k.zeroed(), "key cleared while two operations hold it")
	k.release()
	assert.False(t, k.zeroed(), "key cleared while one operation holds it")
	k.release()
	assert.True(t, k.zeroed(), "the last release clears the key")
	assert.Equal(t, int64(kekDestroyed|kekWiped), k.state.Load())
	// Neither a second Destroy nor a refused acquire wipes again or
	// disturbs the state.
	k.Destroy()
	require.ErrorIs(t, k.acquire(), ErrKeyDestroyed)
	assert.Equal(t, int64(kekDestroyed|kekWiped), k.state.Load())

	idle := testKEK(t, seqBytes(KEKSize, 1))
	idle.Destroy()
	assert.True(t, idle.zeroed(), "Destroy clears at once when nothing holds the key")
	var nilKEK *KEK
	nilKEK.Destroy()
	require.ErrorIs(t, nilKEK.acquire(), ErrUnknownKey)
}

// TestWipeHappensExactlyOnce races many acquire/release pairs against
// Destroy: the key is wiped once, after the last reference, whatever the
// interleaving.
func TestWipeHappensExactlyOnce(t *testing.T) {
	for range 200 {
		k := testKEK(t, seqBytes(KEKSize, 1))
		var wg sync.WaitGroup
		start := make(chan struct{})
		for range 4 {
			wg.Go(func() {
				<-start
				for range 50 {
					if k.acquire() != nil {
						return
					}
					if k.zeroed() {
						t.Error("key cleared under a reference")
					}
					k.release()
				}
			})
		}
		close(start)
		runtime.Gosched()
		k.Destroy()
		wg.Wait()
		require.Equal(t, int64(kekDestroyed|kekWiped), k.state.Load())
		require.True(t, k.zeroed())
	}
}

// TestDestroyDuringLargeOperation destroys the KEK while a 64 MiB seal or
// open holds it. Before reference counting, Tink's AES-SIV rebuilt its CTR
// cipher from a cleared key and sealed under an all-zero key without error.
// Now a seal fails with ErrKeyDestroyed and an open completes under the
// real key (or, if the destroy lands between two of its key uses, fails
// with ErrKeyDestroyed); the key is cleared only when the operation returns.
func TestDestroyDuringLargeOperation(t *testing.T) {
	raw := seqBytes(KEKSize, 7)
	big := bytes.Repeat([]byte("fieldcrypt"), 64<<20/10)
	b := Binding{Class: Critical, Table: "patients", Column: "scan"}
	ctx := context.Background()
	ref := New(oneKEK{testKEK(t, raw)})
	detCT, err := ref.SealDeterministic(ctx, b, big)
	require.NoError(t, err)
	randCT, err := ref.Seal(ctx, b, big)
	require.NoError(t, err)

	tests := []struct {
		name string
		op   func(e *Envelope) ([]byte, error)
		want []byte // nil: the op must fail with ErrKeyDestroyed
	}{
		{"seal-deterministic", func(e *Envelope) ([]byte, error) { return e.SealDeterministic(ctx, b, big) }, nil},
		{"seal", func(e *Envelope) ([]byte, error) { return e.Seal(ctx, b, big) }, nil},
		{"open-deterministic", func(e *Envelope) ([]byte, error) { return e.Open(ctx, b, detCT) }, big},
		{"open", func(e *Envelope) ([]byte, error) { return e.Open(ctx, b, randCT) }, big},
		{"reencrypt", func(e *Envelope) ([]byte, error) { return e.Reencrypt(ctx, b, randCT) }, nil},
	}
	type result struct {
		out []byte
		err error
	}
	// run starts op, destroys the KEK once op holds it and returns op's
	// result and whether the key was cleared after op returned.
	run := func(op func(e *Envelope) ([]byte, error)) (result, bool) {
		k := testKEK(t, raw)
		e := New(oneKEK{k})
		done := make(chan result, 1)
		go func() {
			out, err := op(e)
			done <- result{out, err}
		}()
		for k.refs() == 0 {
			runtime.Gosched()
		}
		k.Destroy()
		r := <-done
		return r, k.zeroed()
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// The operation holds the key for tens of milliseconds; should
			// this goroutine still be descheduled until it has returned, the
			// Destroy came too late to test anything and we try again.
			for attempt := 1; ; attempt++ {
				r, zeroed := run(tc.op)
				assert.True(t, zeroed, "the key is cleared when the operation returns")
				if tc.want != nil {
					// An open either completes under the real key or, when the
					// destroy landed between its key uses, fails cleanly.
					if r.err != nil {
						require.ErrorIs(t, r.err, ErrKeyDestroyed)
						require.Nil(t, r.out)
						return
					}
					require.True(t, bytes.Equal(tc.want, r.out), "open returned a wrong plaintext")
					return
				}
				if r.err != nil {
					require.ErrorIs(t, r.err, ErrKeyDestroyed)
					require.Nil(t, r.out)
					return
				}
				// Sealed before Destroy: the value must be genuine.
				pt, err := ref.Open(ctx, b, r.out)
				require.NoError(t, err)
				require.True(t, bytes.Equal(big, pt))
				require.Less(t, attempt, 5, "Destroy never landed during the operation")
			}
		})
	}
}

// TestConcurrentUseAndDestroy runs sealing, opening, deterministic sealing
// and blind indexing on one KEK from many goroutines and destroys it in the
// middle. Every result produced must be right under a second, independent
// KEK built from the same bytes; every failure must be ErrKeyDestroyed.
func TestConcurrentUseAndDestroy(t *testing.T) {
	raw := seqBytes(KEKSize, 3)
	ctx := context.Background()
	check := New(oneKEK{testKEK(t, raw)})
	b := Binding{Class: Critical, Table: "patients", Column: "ssn", Row: "17"}
	value := []byte("123-45-6789")
	stored, err := check.Seal(ctx, b, value)
	require.NoError(t, err)
	wantDet, err := check.SealDeterministic(ctx, b, value)
	require.NoError(t, err)
	wantIdx, err := check.ComputeBlindIndex(ctx, b, BlindIndex{}, value)
	require.NoError(t, err)

	ops := []func(e *Envelope) error{
		func(e *Envelope) error {
			ct, err := e.Seal(ctx, b, value)
			if err != nil {
				return err
			}
			pt, err := check.Open(ctx, b, ct)
			if err != nil || !bytes.Equal(pt, value) {
				t.Errorf("a sealed value does not open under the same key bytes: %v", err)
			}
			return nil
		},
		func(e *Envelope) error {
			pt, err := e.Open(ctx, b, stored)
			if err == nil && !bytes.Equal(pt, value) {
				t.Errorf("open returned a wrong plaintext")
			}
			return err
		},
		func(e *Envelope) error {
			ct, err := e.SealDeterministic(ctx, b, value)
			if err == nil && !bytes.Equal(ct, wantDet) {
				t.Errorf("deterministic value differs from the one under the same key bytes")
			}
			return err
		},
		func(e *Envelope) error {
			idx, err := e.ComputeBlindIndex(ctx, b, BlindIndex{}, value)
			if err == nil && !bytes.Equal(idx, wantIdx) {
				t.Errorf("blind index differs from the one under the same key bytes")
			}
			return err
		},
		func(e *Envelope) error {
			c, err := e.DeterministicCandidates(ctx, b, value)
			if err == nil && (len(c) != 1 || !bytes.Equal(c[0], wantDet)) {
				t.Errorf("deterministic candidates differ")
			}
			return err
		},
	}
	const perOp = 4          // goroutines per operation
	const beforeDestroy = 50 // successes each goroutine has before Destroy
	for round := range 3 {
		k := testKEK(t, raw)
		e := New(oneKEK{k})
		var ready, wg sync.WaitGroup
		ready.Add(len(ops) * perOp)
		for i := range len(ops) * perOp {
			op := ops[i%len(ops)]
			wg.Go(func() {
				n := 0
				for {
					err := op(e)
					if err != nil {
						if !errors.Is(err, ErrKeyDestroyed) {
							t.Errorf("round %d op %d: failure that is not ErrKeyDestroyed: %v", round, i%len(ops), err)
						}
						if n < beforeDestroy {
							ready.Done()
						}
						return
					}
					if n++; n == beforeDestroy {
						ready.Done()
					}
				}
			})
		}
		ready.Wait() // every goroutine is running and has succeeded
		k.Destroy()
		wg.Wait()
		require.True(t, k.zeroed(), "round %d: key not cleared after the last operation", round)
		require.Zero(t, k.refs())
	}
}

// BenchmarkKEKReference measures what every operation now pays for holding
// its KEK: one acquire and one release (an atomic add each), plus the
// re-check of a seal.
func BenchmarkKEKReference(b *testing.B) {
	k := testKEK(b, seqBytes(KEKSize, 1))
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := k.acquire(); err != nil {
				b.Fatal(err)
			}
			if err := k.usable(); err != nil {
				b.Fatal(err)
			}
			k.release()
		}
	})
}

// TestReencryptWithFailsWhenSourceDestroyed: what ReencryptWith hands its
// callback is the value's plaintext, under the source KEK still held; if
// that KEK is destroyed before the call returns, the new ciphertext is not
// returned (a shredded value must not live on under a new key), and an
// error from the callback comes back as it is.
func TestReencryptWithFailsWhenSourceDestroyed(t *testing.T) {
	ctx := context.Background()
	b := Binding{Class: Critical, Table: "patients", Column: "ssn"}
	raw := seqBytes(KEKSize, 3)
	sealed, err := New(oneKEK{testKEK(t, raw)}).Seal(ctx, b, []byte("123-45-6789"))
	require.NoError(t, err)

	k := testKEK(t, raw)
	e := New(oneKEK{k})
	var seen string
	out, err := e.ReencryptWith(ctx, b, sealed, func(pt []byte) error {
		seen = string(pt)
		return nil
	})
	require.NoError(t, err)
	assert.Equal(t, "123-45-6789", seen)
	pt, err := e.Open(ctx, b, out)
	require.NoError(t, err)
	assert.Equal(t, "123-45-6789", string(pt))

	boom := errors.New("index failed")
	_, err = e.ReencryptWith(ctx, b, sealed, func([]byte) error { return boom })
	require.ErrorIs(t, err, boom)

	out, err = e.ReencryptWith(ctx, b, sealed, func([]byte) error { k.Destroy(); return nil })
	require.ErrorIs(t, err, ErrKeyDestroyed)
	assert.Nil(t, out)
}
