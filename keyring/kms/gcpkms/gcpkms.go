// Package gcpkms is a master key held in Google Cloud KMS.
//
// The common case is a URI naming a symmetric (ENCRYPT_DECRYPT) crypto key
// and Application Default Credentials:
//
//	import _ "github.com/fieldcrypt/fieldcrypt/keyring/kms/gcpkms"
//	mk, err := kms.Open(ctx, "gcp-kms://projects/P/locations/L/keyRings/R/cryptoKeys/K")
//
// Wrap calls Encrypt on the crypto key (Cloud KMS picks its primary
// version and records it in the ciphertext, so key rotation in Cloud KMS
// needs nothing from fieldcrypt); Unwrap calls Decrypt. The encryption
// context is sent as additional authenticated data, canonically encoded
// (kms.EncryptionContext.Canonical), so Unwrap fails unless the context
// matches exactly.
//
// Every request and response carries the CRC32C checksums Cloud KMS
// documents for end-to-end integrity; a mismatch fails the call with an
// error wrapping ErrIntegrity and kms.ErrUnavailable (corruption in
// transit is transient: retrying is right). The client library retries
// Unavailable and DeadlineExceeded for up to 60 s unless ctx ends sooner,
// so callers should give every call a deadline.
//
// The opener registered for gcp-kms:// (Opener{}) always talks to Cloud
// KMS with TLS and Application Default Credentials: no environment
// variable changes that. For tests and emulators, register an Opener with
// Endpoint (host:port) and, for a plaintext unauthenticated emulator,
// Insecure: it drops TLS and authentication, so unwrapped keys would cross
// the network in clear. Never set it in production.
package gcpkms

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"strings"
	"sync"

	kmsapi "cloud.google.com/go/kms/apiv1"
	"cloud.google.com/go/kms/apiv1/kmspb"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/fieldcrypt/fieldcrypt/keyring/kms"
)

// Scheme is the URI scheme this package registers.
const Scheme = "gcp-kms"

// maxCiphertext is Cloud KMS's limit on Decrypt's ciphertext; anything
// longer cannot have come from Encrypt.
const maxCiphertext = 10*(1<<10) + 64*(1<<10)

// ErrIntegrity means a CRC32C check on a request or response failed: the
// data was corrupted between this process and Cloud KMS. It is wrapped
// together with kms.ErrUnavailable.
var ErrIntegrity = errors.New("gcpkms: CRC32C integrity check failed")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func crc32c(b []byte) int64 { return int64(crc32.Checksum(b, castagnoli)) }

func init() {
	kms.Register(Scheme, Opener{})
}

// KeyName returns the crypto key resource name in a gcp-kms:// URI, or an
// error wrapping kms.ErrInvalidURI.
func KeyName(uri string) (string, error) {
	name, ok := strings.CutPrefix(uri, Scheme+"://")
	if !ok {
		return "", fmt.Errorf("%w: %q does not start with %s://", kms.ErrInvalidURI, uri, Scheme)
	}
	p := strings.Split(name, "/")
	if len(p) != 8 || p[0] != "projects" || p[2] != "locations" || p[4] != "keyRings" || p[6] != "cryptoKeys" ||
		p[1] == "" || p[3] == "" || p[5] == "" || p[7] == "" {
		return "", fmt.Errorf("%w: %q (want %s://projects/P/locations/L/keyRings/R/cryptoKeys/K)", kms.ErrInvalidURI, uri, Scheme)
	}
	return name, nil
}

// MasterKey is a Cloud KMS crypto key. It is safe for concurrent use.
type MasterKey struct {
	uri    string
	name   string
	client *kmsapi.KeyManagementClient
	owned  bool // client created by New (or an Opener), closed by Close
	closed sync.Once
}

var _ kms.MasterKey = (*MasterKey)(nil)

// Option configures New.
type Option func(*options)

type options struct {
	client     *kmsapi.KeyManagementClient
	clientOpts []option.ClientOption
}

// WithClient makes the key use c. The caller keeps ownership: Close does
// not close c.
func WithClient(c *kmsapi.KeyManagementClient) Option {
	return func(o *options) { o.client = c }
}

// WithClientOptions makes New create its own client with these options
// (credentials, endpoint, ...). Close closes that client.
func WithClientOptions(opts ...option.ClientOption) Option {
	return func(o *options) { o.clientOpts = append(o.clientOpts, opts...) }
}

// New returns the master key a gcp-kms:// URI names. Without WithClient it
// creates a client from Application Default Credentials (and any
// WithClientOptions); it makes no call to Cloud KMS.
func New(ctx context.Context, uri string, opts ...Option) (*MasterKey, error) {
	name, err := KeyName(uri)
	if err != nil {
		return nil, &kms.Error{Op: "open", URI: uri, Err: err}
	}
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	k := &MasterKey{uri: uri, name: name, client: o.client}
	if k.client == nil {
		k.client, err = kmsapi.NewKeyManagementClient(ctx, o.clientOpts...)
		if err != nil {
			return nil, &kms.Error{Op: "open", URI: uri, Err: fmt.Errorf("%w: create Cloud KMS client: %w", kms.ErrUnavailable, err)}
		}
		k.owned = true
	}
	return k, nil
}

// Opener opens gcp-kms:// URIs. The zero value is the production opener
// registered in kms.DefaultRegistry: Cloud KMS over TLS with Application
// Default Credentials. Each key it opens has its own client, which the
// key's Close closes: no client outlives the keys that use it.
type Opener struct {
	// Endpoint overrides the Cloud KMS endpoint (host:port). It keeps TLS
	// and authentication unless Insecure is set.
	Endpoint string
	// Insecure talks to Endpoint in plaintext gRPC without authentication
	// (an emulator): unwrapped keys cross the network in clear. For tests
	// only; it needs an Endpoint.
	Insecure bool
	// ClientOptions are passed to every client the opener creates.
	ClientOptions []option.ClientOption
}

// ValidateURI checks a gcp-kms:// URI without contacting Cloud KMS.
func (o Opener) ValidateURI(uri string) error {
	_, err := KeyName(uri)
	return err
}

// OpenMasterKey returns the master key uri names, with a client of its
// own. It makes no call to Cloud KMS.
func (o Opener) OpenMasterKey(ctx context.Context, uri string) (kms.MasterKey, error) {
	if _, err := KeyName(uri); err != nil {
		return nil, &kms.Error{Op: "open", URI: uri, Err: err}
	}
	opts := append([]option.ClientOption(nil), o.ClientOptions...)
	switch {
	case o.Insecure && o.Endpoint == "":
		return nil, &kms.Error{Op: "open", URI: uri, Err: fmt.Errorf("%w: insecure needs an explicit emulator endpoint", kms.ErrInvalidInput)}
	case o.Insecure:
		opts = append(opts, option.WithEndpoint(o.Endpoint), option.WithoutAuthentication(),
			option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())))
	case o.Endpoint != "":
		opts = append(opts, option.WithEndpoint(o.Endpoint))
	}
	return New(ctx, uri, WithClientOptions(opts...))
}

// URI returns the key's gcp-kms:// URI.
func (k *MasterKey) URI() string { return k.uri }

// Close closes the client New (or an Opener) created; it does nothing for
// a client passed with WithClient.
func (k *MasterKey) Close() error {
	var err error
	k.closed.Do(func() {
		if k.owned {
			err = k.client.Close()
		}
	})
	return err
}

// Wrap encrypts key with Cloud KMS Encrypt, bound to ec.
func (k *MasterKey) Wrap(ctx context.Context, key []byte, ec kms.EncryptionContext) ([]byte, error) {
	if err := kms.ContextError(ctx); err != nil {
		return nil, k.err("wrap", err)
	}
	if err := kms.CheckWrapInput(key, ec); err != nil {
		return nil, k.err("wrap", err)
	}
	aad := ec.Canonical()
	resp, err := k.client.Encrypt(ctx, &kmspb.EncryptRequest{
		Name:                              k.name,
		Plaintext:                         key,
		PlaintextCrc32C:                   wrapperspb.Int64(crc32c(key)),
		AdditionalAuthenticatedData:       aad,
		AdditionalAuthenticatedDataCrc32C: wrapperspb.Int64(crc32c(aad)),
	})
	if err != nil {
		return nil, k.err("wrap", mapError(ctx, "wrap", err))
	}
	switch {
	case !resp.GetVerifiedPlaintextCrc32C():
		return nil, k.err("wrap", integrity("Cloud KMS did not verify the plaintext checksum"))
	case !resp.GetVerifiedAdditionalAuthenticatedDataCrc32C():
		return nil, k.err("wrap", integrity("Cloud KMS did not verify the additional authenticated data checksum"))
	case resp.GetCiphertextCrc32C() == nil || resp.GetCiphertextCrc32C().GetValue() != crc32c(resp.GetCiphertext()):
		return nil, k.err("wrap", integrity("ciphertext checksum mismatch in the Encrypt response"))
	case resp.GetName() != k.name && !strings.HasPrefix(resp.GetName(), k.name+"/cryptoKeyVersions/"):
		return nil, k.err("wrap", fmt.Errorf("%w: Encrypt response names key %q, not a version of this key", kms.ErrAuthentication, resp.GetName()))
	case len(resp.GetCiphertext()) == 0:
		return nil, k.err("wrap", integrity("empty ciphertext in the Encrypt response"))
	}
	return resp.GetCiphertext(), nil
}

// Unwrap decrypts what Wrap returned with Cloud KMS Decrypt.
func (k *MasterKey) Unwrap(ctx context.Context, wrapped []byte, ec kms.EncryptionContext) ([]byte, error) {
	if err := kms.ContextError(ctx); err != nil {
		return nil, k.err("unwrap", err)
	}
	if err := kms.CheckUnwrapInput(wrapped, ec, maxCiphertext); err != nil {
		return nil, k.err("unwrap", err)
	}
	aad := ec.Canonical()
	resp, err := k.client.Decrypt(ctx, &kmspb.DecryptRequest{
		Name:                              k.name,
		Ciphertext:                        wrapped,
		CiphertextCrc32C:                  wrapperspb.Int64(crc32c(wrapped)),
		AdditionalAuthenticatedData:       aad,
		AdditionalAuthenticatedDataCrc32C: wrapperspb.Int64(crc32c(aad)),
	})
	if err != nil {
		return nil, k.err("unwrap", mapError(ctx, "unwrap", err))
	}
	pt := resp.GetPlaintext()
	if resp.GetPlaintextCrc32C() == nil || resp.GetPlaintextCrc32C().GetValue() != crc32c(pt) {
		clear(pt)
		return nil, k.err("unwrap", integrity("plaintext checksum mismatch in the Decrypt response"))
	}
	return pt, nil
}

func (k *MasterKey) err(op string, err error) error {
	return &kms.Error{Op: op, URI: k.uri, Err: err}
}

func integrity(msg string) error {
	return fmt.Errorf("%w: %w: %s", kms.ErrUnavailable, ErrIntegrity, msg)
}

// mapError maps a Cloud KMS client error to the kms sentinels, keeping the
// original (status code and message, never key material) wrapped. A
// cancelled or expired ctx is also wrapped, so errors.Is(err,
// context.Canceled) holds.
func mapError(ctx context.Context, op string, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("%w: %w: %w", kms.ErrUnavailable, cerr, err)
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w: %w", kms.ErrUnavailable, err)
	}
	var sentinel error
	switch status.Code(err) {
	case codes.PermissionDenied, codes.Unauthenticated:
		sentinel = kms.ErrAccessDenied
	case codes.FailedPrecondition:
		sentinel = kms.ErrKeyDisabled
	case codes.NotFound:
		sentinel = kms.ErrKeyNotFound
	case codes.InvalidArgument, codes.OutOfRange:
		if op == "unwrap" {
			sentinel = kms.ErrAuthentication
		} else {
			sentinel = kms.ErrInvalidInput
		}
	default:
		// Unavailable, DeadlineExceeded, Canceled, ResourceExhausted,
		// Internal, Aborted, Unknown (transport errors), ...: transient.
		sentinel = kms.ErrUnavailable
	}
	return fmt.Errorf("%w: %w", sentinel, err)
}
