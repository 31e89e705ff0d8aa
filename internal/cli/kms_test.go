package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	kmssdk "github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fieldcrypt/fieldcrypt/internal/testsvc"
)

// kmsEndpoint points the AWS KMS backend of the env's configuration at an
// emulator: only the configuration file can (no environment variable).
func (e *env) kmsEndpoint(endpoint string) {
	e.t.Helper()
	path := filepath.Join(e.dir, "fieldcrypt.yaml")
	data, _ := os.ReadFile(path)
	var kept []string
	for _, l := range strings.Split(string(data), "\n") {
		if l != "" && !strings.HasPrefix(l, "kms:") {
			kept = append(kept, l)
		}
	}
	kept = append(kept, fmt.Sprintf("kms: {aws: {endpoint: %q, insecure: true}}", endpoint), "")
	require.NoError(e.t, os.WriteFile(path, []byte(strings.Join(kept, "\n")), 0o600))
}

// TestKMSEndpointOnlyFromConfiguration: the variable that used to point
// the CLI at an emulator does nothing; an insecure endpoint needs
// insecure: true in the file.
func TestKMSEndpointOnlyFromConfiguration(t *testing.T) {
	endpoint := testsvc.Moto(t)
	awsEnv(t)
	high := motoARN(t, endpoint)
	f := newEnv(t)
	f.vars["FIELDCRYPT_AWS_KMS_ENDPOINT"] = endpoint
	t.Setenv("FIELDCRYPT_AWS_KMS_ENDPOINT", endpoint)
	f.code(ExitKey, "init", "--no-bootstrap", "--master-key", "high="+high, "--database", "sqlite://aws.db")
	f.write("fieldcrypt.yaml", fmt.Sprintf("kms: {aws: {endpoint: %q}}\n", endpoint))
	r := f.code(ExitUsage, "init", "--master-key", "high="+high, "--database", "sqlite://aws.db")
	assert.Contains(t, r.stderr, "insecure")
	f.kmsEndpoint(endpoint)
	f.ok("init", "--master-key", "high="+high, "--database", "sqlite://aws.db")
}

// motoARN creates a key in moto and returns its master key URI.
func motoARN(t *testing.T, endpoint string) string {
	t.Helper()
	c := kmssdk.New(kmssdk.Options{Region: "us-east-1", BaseEndpoint: aws.String(endpoint),
		Credentials: credentials.NewStaticCredentialsProvider("test", "test", "")})
	out, err := c.CreateKey(context.Background(), &kmssdk.CreateKeyInput{Description: aws.String("fieldcrypt cli " + t.Name())})
	require.NoError(t, err)
	return "aws-kms://" + aws.ToString(out.KeyMetadata.Arn)
}

func awsEnv(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", "test")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "test")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_MAX_ATTEMPTS", "1")
}

// TestAWSKMSThroughTheCLI: a keyring whose critical master key is in
// AWS KMS (moto), master key rotation from a local key to AWS KMS, an
// encrypted backup under AWS KMS, and a KMS outage (exit 4).
func TestAWSKMSThroughTheCLI(t *testing.T) {
	endpoint := testsvc.Moto(t)
	awsEnv(t)
	critical, high := motoARN(t, endpoint), motoARN(t, endpoint)

	e, _ := quickstartEnv(t)
	e.kmsEndpoint(endpoint)
	// master key rotation: local -> AWS KMS, then the data still opens
	r := e.ok("keys", "rewrap", "--class", "critical", "--to", critical, "-o", "json")
	var rr rewrapResult
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &rr))
	assert.Equal(t, 2, rr.Rewrapped)
	e.ok("keys", "rotate", "--class", "critical")
	e.ok("reencrypt", "--all")
	var c censusResult
	require.NoError(t, json.Unmarshal([]byte(e.ok("keys", "census", "-o", "json").stdout), &c))
	assert.Empty(t, c.Failed)
	var keks []kekJSON
	require.NoError(t, json.Unmarshal([]byte(e.ok("keys", "list", "--class", "critical", "-o", "json").stdout), &keks))
	for _, k := range keks {
		assert.Equal(t, critical, k.MasterKeyURI)
	}

	// a fresh keyring on AWS KMS given by flags only (no config file)
	f := newEnv(t)
	f.kmsEndpoint(endpoint)
	f.ok("init", "--master-key", "high="+high, "--database", "sqlite://aws.db")
	f.ok("keys", "rotate", "--class", "high", "--master-key", "high="+high, "--database", "sqlite://aws.db")
	r = f.runIn("payload under aws kms", "backup", "encrypt", "--class", "high", "--master-key", "high="+high)
	require.Equal(t, 0, r.code, r.stderr)
	f.write("b.fcb", r.stdout)
	f.ok("backup", "verify", "--in", "b.fcb", "--master-key", "high="+high)

	// KMS outage: nothing cached in a new process, so exit 4
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	dead := "http://" + l.Addr().String()
	require.NoError(t, l.Close())
	e.kmsEndpoint(dead)
	f.kmsEndpoint(dead)
	e.code(ExitKey, "keys", "census", "--column", "patients.ssn")
	f.code(ExitKey, "backup", "verify", "--in", "b.fcb", "--master-key", "high="+high)
	// headers only needs no KMS
	e.ok("keys", "census", "--headers-only")
}
