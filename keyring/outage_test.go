package keyring

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	kmssdk "github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fieldcrypt/fieldcrypt/envelope"
	"github.com/fieldcrypt/fieldcrypt/internal/testsvc"
	"github.com/fieldcrypt/fieldcrypt/keyring/kms"
	"github.com/fieldcrypt/fieldcrypt/keyring/kms/awskms"
)

// countedKey counts the calls that reach the KMS client.
type countedKey struct {
	kms.MasterKey
	calls atomic.Int64
}

func (c *countedKey) Wrap(ctx context.Context, key []byte, ec kms.EncryptionContext) ([]byte, error) {
	c.calls.Add(1)
	return c.MasterKey.Wrap(ctx, key, ec)
}

func (c *countedKey) Unwrap(ctx context.Context, wrapped []byte, ec kms.EncryptionContext) ([]byte, error) {
	c.calls.Add(1)
	return c.MasterKey.Unwrap(ctx, wrapped, ec)
}

// TestKMSOutageMoto drives a KMS outage through the real AWS SDK (default
// retries, as in production) against a moto_server the test kills and
// starts again on the same port.
//
// The master key is an alias, so that the URI still names a key after the
// restart (moto keeps nothing: the alias is re-created on a new key), and
// the keyring is new (its class key and KEKs are created, not unwrapped,
// once the KMS is back: what a key wrapped before the outage needs cannot
// survive a moto restart).
//
// While the KMS is down, the first call waits for the SDK's retries and
// opens the breaker; every other seal fails at once with
// envelope.ErrKeyUnavailable, and the KMS calls made are bounded by the
// probe schedule. Once the KMS answers, the first probe closes the breaker
// and seals succeed: the test reports how long after the KMS came back the
// first value was sealed. A baseline without the breaker, in the same run,
// shows the seals the outage costs otherwise.
func TestKMSOutageMoto(t *testing.T) {
	srv := testsvc.StartMoto(t)
	client := kmssdk.New(kmssdk.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(srv.URL),
		Credentials:  credentials.NewStaticCredentialsProvider("test", "test", ""),
	})
	const alias = "alias/fieldcrypt-outage"
	uri := "aws-kms://arn:aws:kms:us-east-1:123456789012:" + alias
	aliasKey := func(t *testing.T) {
		t.Helper()
		out, err := client.CreateKey(context.Background(), &kmssdk.CreateKeyInput{})
		require.NoError(t, err)
		_, err = client.CreateAlias(context.Background(), &kmssdk.CreateAliasInput{AliasName: aws.String(alias), TargetKeyId: out.KeyMetadata.KeyId})
		require.NoError(t, err)
	}
	aliasKey(t)
	mk, err := awskms.New(context.Background(), uri, awskms.WithClient(client))
	require.NoError(t, err)
	cfg := Config{Name: "outage", Classes: map[string]ClassConfig{"critical": {MasterKey: uri}}}
	b := envelope.Binding{Class: envelope.Critical, Table: "t", Column: "c"}

	// seals runs workers sealing a value every 10 ms each until stop is
	// closed, and counts what succeeded and failed.
	type tally struct{ ok, failed atomic.Int64 }
	seals := func(env *envelope.Envelope, stop <-chan struct{}, firstOK chan<- time.Time, n *tally) *sync.WaitGroup {
		var wg sync.WaitGroup
		var once sync.Once
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					case <-time.After(10 * time.Millisecond):
					}
					_, err := env.Seal(context.Background(), b, []byte("value"))
					if err != nil {
						if !assert.ErrorIs(t, err, envelope.ErrKeyUnavailable) {
							return
						}
						n.failed.Add(1)
						continue
					}
					n.ok.Add(1)
					once.Do(func() { firstOK <- time.Now() })
				}
			}()
		}
		return &wg
	}
	const window = 2 * time.Second

	srv.Stop()
	t.Run("without-breaker", func(t *testing.T) {
		counted := &countedKey{MasterKey: mk}
		kr, err := New(cfg, NewFileStore(filepath.Join(t.TempDir(), "keyring.json")),
			WithMasterKeys(counted), WithCircuitBreaker(0, 0))
		require.NoError(t, err)
		defer kr.Close()
		var n tally
		stop := make(chan struct{})
		wg := seals(envelope.New(kr), stop, make(chan time.Time, 1), &n)
		time.Sleep(window)
		close(stop)
		wg.Wait()
		assert.Zero(t, n.ok.Load())
		t.Logf("KMS down %v, no breaker: %d seals failed (%.1f/s), %d KMS calls", window, n.failed.Load(), float64(n.failed.Load())/window.Seconds(), counted.calls.Load())
	})

	counted := &countedKey{MasterKey: mk}
	const after, maxWait = DefaultProbeAfter, DefaultMaxProbe
	kr, err := New(cfg, NewFileStore(filepath.Join(t.TempDir(), "keyring.json")), WithMasterKeys(counted))
	require.NoError(t, err)
	defer kr.Close()
	var n tally
	stop := make(chan struct{})
	firstOK := make(chan time.Time, 1)
	start := time.Now()
	wg := seals(envelope.New(kr), stop, firstOK, &n)
	require.Eventually(t, func() bool { return kr.Stats().OpenBreakers == 1 }, time.Minute, time.Millisecond, "the first call opens the breaker")
	opened := time.Now()
	time.Sleep(window)
	st := kr.Stats()
	calls := counted.calls.Load()
	whileOpen := calls - 1
	assert.LessOrEqual(t, whileOpen, int64(maxProbes(time.Since(opened), after, maxWait)+4), "KMS calls while open: probes (and at most one call per worker that started before it opened)")
	assert.Zero(t, n.ok.Load())
	assert.Greater(t, st.KMSRejected, uint64(0))
	failedOpen := n.failed.Load()
	t.Logf("KMS down: the first call took %v (SDK retries); then %d seals failed in %v (%.1f/s) with %d KMS calls (%d probes)",
		opened.Sub(start).Round(time.Millisecond), failedOpen, window, float64(failedOpen)/window.Seconds(), whileOpen, st.KMSProbes)

	srv.Start() // returns once moto answers
	back := time.Now()
	aliasKey(t)
	var first time.Time
	select {
	case first = <-firstOK:
	case <-time.After(time.Minute):
		t.Fatal("no value sealed within a minute of the KMS returning")
	}
	time.Sleep(200 * time.Millisecond)
	close(stop)
	wg.Wait()
	assert.Greater(t, n.ok.Load(), int64(1))
	t.Logf("KMS back: first value sealed %v after the KMS answered again (the test re-creates the key and alias meanwhile; probe schedule %v doubling to %v); %s",
		first.Sub(back).Round(time.Millisecond), after, maxWait, fmt.Sprintf("%+v", kr.Stats()))
}
