package awskms_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fieldcrypt/fieldcrypt/keyring/kms"
)

// captureStderr returns what fn wrote to the process's stderr.
func captureStderr(t *testing.T, fn func()) string {
	t.Helper()
	r, w, err := os.Pipe()
	require.NoError(t, err)
	saved := os.Stderr
	os.Stderr = w
	done := make(chan string)
	go func() {
		b, _ := io.ReadAll(r)
		done <- string(b)
	}()
	defer func() { os.Stderr = saved }()
	fn()
	w.Close()
	os.Stderr = saved
	return <-done
}

// TestNoSDKWarningsOnStderr (issue 12 §8): the AWS SDK's own warnings,
// such as the instance metadata service's "falling back to IMDSv1", never
// reach the operator's terminal; the error says what failed.
func TestNoSDKWarningsOnStderr(t *testing.T) {
	imds := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut {
			w.WriteHeader(http.StatusForbidden) // no IMDSv2 token: the SDK warns and falls back
			return
		}
		w.WriteHeader(http.StatusNotFound)
	}))
	defer imds.Close()
	dir := t.TempDir()
	t.Setenv("AWS_ACCESS_KEY_ID", "")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "")
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "config"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "credentials"))
	t.Setenv("AWS_EC2_METADATA_DISABLED", "")
	t.Setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.URL)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var err error
	out := captureStderr(t, func() {
		var k kms.MasterKey
		if k, err = kms.Open(ctx, "aws-kms://arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"); err == nil {
			_, err = k.Wrap(ctx, []byte("0123456789abcdef"), nil)
		}
	})
	require.Error(t, err)
	assert.ErrorIs(t, err, kms.ErrUnavailable)
	assert.Empty(t, out, "the SDK wrote to stderr")
}
