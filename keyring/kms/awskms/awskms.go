// Package awskms is a master key held in AWS KMS.
//
// The common case is a URI naming a symmetric (SYMMETRIC_DEFAULT) KMS key
// by its ARN, and the SDK's default credential chain:
//
//	import _ "github.com/fieldcrypt/fieldcrypt/keyring/kms/awskms"
//	mk, err := kms.Open(ctx, "aws-kms://arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab")
//
// Alias ARNs (arn:aws:kms:REGION:ACCOUNT:alias/NAME) work too; the region
// always comes from the ARN, never from the environment, so a URI means the
// same key everywhere.
//
// Wrap calls Encrypt and Unwrap calls Decrypt, both with KeyId set to the
// ARN and the encryption context passed as KMS's native
// EncryptionContext, so KMS authenticates it, logs it in CloudTrail, and
// key policies can condition on it. Decrypt also checks that KMS answered
// with the expected key.
//
// The context keys fieldcrypt sends all start with "fieldcrypt:" (see
// docs/operations.md, "KMS key policies", for every wrap):
//
//   - a KEK: fieldcrypt:class (the class name, lower case: "critical"),
//     fieldcrypt:kek-version (decimal: "3"), fieldcrypt:keyring (the
//     keyring id), and fieldcrypt:tenant for a tenant's KEK;
//   - a class key: fieldcrypt:class, fieldcrypt:keyring and
//     fieldcrypt:purpose = "class-key";
//   - a backup's file key: fieldcrypt:purpose = "backup",
//     fieldcrypt:backup-version, fieldcrypt:class, fieldcrypt:export-id,
//     fieldcrypt:created-at and, when named, fieldcrypt:export-name.
//
// So a key policy condition reads, for example,
//
//	"Condition": {"StringEquals": {
//	    "kms:EncryptionContext:fieldcrypt:keyring": "billing",
//	    "kms:EncryptionContext:fieldcrypt:class": "critical"}}
//
// Every call runs under the caller's ctx: give it a deadline, as the SDK
// retries transient failures (3 attempts by default) with backoff.
//
// The opener registered for aws-kms:// (Opener{}) always talks to the
// region's real AWS KMS endpoint over TLS: no environment variable changes
// that (the SDK's own AWS_ENDPOINT_URL and AWS_ENDPOINT_URL_KMS are
// ignored). For tests and emulators (moto, LocalStack), register an Opener
// with Endpoint set, in your own kms.Registry or in kms.DefaultRegistry; a
// plain http:// endpoint also needs Insecure, which says on purpose that
// wrapped and unwrapped keys may cross the network unencrypted.
package awskms

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/arn"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	kmssdk "github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/logging"

	"github.com/fieldcrypt/fieldcrypt/keyring/kms"
)

// Scheme is the URI scheme this package registers.
const Scheme = "aws-kms"

var (
	partitionRE = regexp.MustCompile(`^aws[a-z-]*$`)
	regionRE    = regexp.MustCompile(`^[a-z0-9-]+$`)
	accountRE   = regexp.MustCompile(`^[0-9]{12}$`)
	keyIDRE     = regexp.MustCompile(`^[A-Za-z0-9-]+$`)
	aliasRE     = regexp.MustCompile(`^[A-Za-z0-9/_-]+$`)
)

// maxCiphertext is AWS KMS's limit on Decrypt's CiphertextBlob.
const maxCiphertext = 6144

func init() {
	kms.Register(Scheme, Opener{})
}

// API is the part of the AWS KMS client this package uses; *kms.Client
// from github.com/aws/aws-sdk-go-v2/service/kms implements it.
type API interface {
	Encrypt(ctx context.Context, in *kmssdk.EncryptInput, optFns ...func(*kmssdk.Options)) (*kmssdk.EncryptOutput, error)
	Decrypt(ctx context.Context, in *kmssdk.DecryptInput, optFns ...func(*kmssdk.Options)) (*kmssdk.DecryptOutput, error)
}

var _ API = (*kmssdk.Client)(nil)

// ParseURI returns the parsed ARN in an aws-kms:// URI, or an error wrapping
// kms.ErrInvalidURI. The ARN must name a KMS key (key/ID) or alias
// (alias/NAME) with a region and an account.
func ParseURI(uri string) (arn.ARN, error) {
	s, ok := strings.CutPrefix(uri, Scheme+"://")
	if !ok {
		return arn.ARN{}, fmt.Errorf("%w: %q does not start with %s://", kms.ErrInvalidURI, uri, Scheme)
	}
	a, err := arn.Parse(s)
	bad := func(why string) (arn.ARN, error) {
		return arn.ARN{}, fmt.Errorf("%w: %q: %s (want %s://arn:aws:kms:REGION:ACCOUNT:key/ID or :alias/NAME)", kms.ErrInvalidURI, uri, why, Scheme)
	}
	switch {
	case err != nil:
		return bad(err.Error())
	case a.Service != "kms":
		return bad("not a KMS ARN")
	case a.Region == "":
		return bad("no region")
	case a.AccountID == "":
		return bad("no account")
	case !partitionRE.MatchString(a.Partition):
		return bad("unknown partition")
	case !regionRE.MatchString(a.Region):
		return bad("bad region")
	case !accountRE.MatchString(a.AccountID):
		return bad("account is not 12 digits")
	}
	kind, id, _ := strings.Cut(a.Resource, "/")
	switch {
	case kind == "key" && keyIDRE.MatchString(id):
	case kind == "alias" && aliasRE.MatchString(id):
	default:
		return bad("resource is neither key/ID nor alias/NAME")
	}
	return a, nil
}

// MasterKey is an AWS KMS key. It is safe for concurrent use.
type MasterKey struct {
	uri    string
	arn    arn.ARN
	keyID  string // the ARN, as sent in KeyId
	alias  bool
	client API
}

var _ kms.MasterKey = (*MasterKey)(nil)

// Option configures New.
type Option func(*options)

type options struct {
	client API
	cfg    *aws.Config
}

// WithClient makes the key use c (typically a *kms.Client).
func WithClient(c API) Option { return func(o *options) { o.client = c } }

// WithConfig makes New build its client from cfg. The region always comes
// from the ARN.
func WithConfig(cfg aws.Config) Option { return func(o *options) { o.cfg = &cfg } }

// New returns the master key an aws-kms:// URI names. Without options it
// loads the SDK's default configuration (environment, shared files, IMDS)
// for the ARN's region. It makes no call to AWS KMS.
func New(ctx context.Context, uri string, opts ...Option) (*MasterKey, error) {
	a, err := ParseURI(uri)
	if err != nil {
		return nil, &kms.Error{Op: "open", URI: uri, Err: err}
	}
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	k := &MasterKey{uri: uri, arn: a, keyID: a.String(), alias: strings.HasPrefix(a.Resource, "alias/"), client: o.client}
	if k.client == nil {
		cfg := o.cfg
		if cfg == nil {
			c, err := config.LoadDefaultConfig(ctx, config.WithRegion(a.Region))
			if err != nil {
				return nil, &kms.Error{Op: "open", URI: uri, Err: fmt.Errorf("%w: load AWS config: %w", kms.ErrUnavailable, err)}
			}
			cfg = &c
		}
		k.client = kmssdk.NewFromConfig(*cfg, func(o *kmssdk.Options) { o.Region = a.Region })
	}
	return k, nil
}

// Opener opens aws-kms:// URIs with the SDK's default credential chain and
// the ARN's region. The zero value is the production opener registered in
// kms.DefaultRegistry.
type Opener struct {
	// Endpoint overrides the KMS base endpoint (an emulator such as moto:
	// http://127.0.0.1:5000). Empty: the region's AWS KMS endpoint.
	Endpoint string
	// Insecure allows an http:// Endpoint: keys then cross the network
	// unencrypted. For emulators only; never set it in production.
	Insecure bool
	// DisableIMDS stops the SDK from asking the EC2 instance metadata
	// service for credentials (outside EC2 it only adds a delay).
	DisableIMDS bool
}

// ValidateURI checks an aws-kms:// URI without contacting AWS.
func (o Opener) ValidateURI(uri string) error {
	_, err := ParseURI(uri)
	return err
}

// OpenMasterKey returns the master key uri names. It makes no call to AWS
// KMS.
func (o Opener) OpenMasterKey(ctx context.Context, uri string) (kms.MasterKey, error) {
	a, err := ParseURI(uri)
	if err != nil {
		return nil, &kms.Error{Op: "open", URI: uri, Err: err}
	}
	if err := o.CheckEndpoint(); err != nil {
		return nil, &kms.Error{Op: "open", URI: uri, Err: err}
	}
	loadOpts := []func(*config.LoadOptions) error{config.WithRegion(a.Region), config.WithLogger(logging.Nop{})}
	if o.DisableIMDS {
		loadOpts = append(loadOpts, config.WithEC2IMDSClientEnableState(imds.ClientDisabled))
	}
	cfg, err := config.LoadDefaultConfig(ctx, loadOpts...)
	if err != nil {
		return nil, &kms.Error{Op: "open", URI: uri, Err: fmt.Errorf("%w: load AWS config: %w", kms.ErrUnavailable, err)}
	}
	client := kmssdk.NewFromConfig(cfg, func(opts *kmssdk.Options) {
		opts.Region = a.Region
		// Only an explicit Endpoint moves the calls: not AWS_ENDPOINT_URL*.
		opts.BaseEndpoint = nil
		if o.Endpoint != "" {
			opts.BaseEndpoint = aws.String(o.Endpoint)
		}
	})
	return New(ctx, uri, WithClient(client))
}

// CheckEndpoint checks Endpoint: https, or http with Insecure.
func (o Opener) CheckEndpoint() error {
	if o.Endpoint == "" {
		return nil
	}
	u, err := url.Parse(o.Endpoint)
	switch {
	case err != nil || u.Host == "":
		return fmt.Errorf("%w: endpoint %q is not a URL (want https://HOST[:PORT])", kms.ErrInvalidInput, o.Endpoint)
	case u.Scheme == "https":
		return nil
	case u.Scheme == "http" && o.Insecure:
		return nil
	case u.Scheme == "http":
		return fmt.Errorf("%w: endpoint %q is plain http: keys would cross the network unencrypted (set insecure for an emulator)", kms.ErrInvalidInput, o.Endpoint)
	}
	return fmt.Errorf("%w: endpoint %q: want https:// (or http:// with insecure)", kms.ErrInvalidInput, o.Endpoint)
}

// URI returns the key's aws-kms:// URI.
func (k *MasterKey) URI() string { return k.uri }

// Close does nothing: the SDK client holds no connection of its own that
// outlives a call.
func (k *MasterKey) Close() error { return nil }

// Wrap encrypts key with AWS KMS Encrypt, bound to ec.
func (k *MasterKey) Wrap(ctx context.Context, key []byte, ec kms.EncryptionContext) ([]byte, error) {
	if err := kms.ContextError(ctx); err != nil {
		return nil, k.err("wrap", err)
	}
	if err := kms.CheckWrapInput(key, ec); err != nil {
		return nil, k.err("wrap", err)
	}
	out, err := k.client.Encrypt(ctx, &kmssdk.EncryptInput{
		KeyId:             aws.String(k.keyID),
		Plaintext:         key,
		EncryptionContext: contextMap(ec),
	})
	if err != nil {
		return nil, k.err("wrap", mapError(ctx, err))
	}
	if err := k.checkKeyID(aws.ToString(out.KeyId)); err != nil {
		return nil, k.err("wrap", err)
	}
	if len(out.CiphertextBlob) == 0 {
		return nil, k.err("wrap", fmt.Errorf("%w: empty CiphertextBlob in the Encrypt response", kms.ErrUnavailable))
	}
	return out.CiphertextBlob, nil
}

// Unwrap decrypts what Wrap returned with AWS KMS Decrypt.
func (k *MasterKey) Unwrap(ctx context.Context, wrapped []byte, ec kms.EncryptionContext) ([]byte, error) {
	if err := kms.ContextError(ctx); err != nil {
		return nil, k.err("unwrap", err)
	}
	if err := kms.CheckUnwrapInput(wrapped, ec, maxCiphertext); err != nil {
		return nil, k.err("unwrap", err)
	}
	out, err := k.client.Decrypt(ctx, &kmssdk.DecryptInput{
		KeyId:             aws.String(k.keyID),
		CiphertextBlob:    wrapped,
		EncryptionContext: contextMap(ec),
	})
	if err != nil {
		return nil, k.err("unwrap", mapError(ctx, err))
	}
	if err := k.checkKeyID(aws.ToString(out.KeyId)); err != nil {
		clear(out.Plaintext)
		return nil, k.err("unwrap", err)
	}
	return out.Plaintext, nil
}

// checkKeyID checks the KeyId of a response: KMS always answers with the
// key ARN. For a key ARN it must be ours; for an alias (whose target KMS
// resolved and enforced itself) it must be a key in the same partition,
// region and account.
func (k *MasterKey) checkKeyID(got string) error {
	if !k.alias {
		if got == k.keyID {
			return nil
		}
	} else if a, err := arn.Parse(got); err == nil && a.Service == "kms" &&
		a.Partition == k.arn.Partition && a.Region == k.arn.Region && a.AccountID == k.arn.AccountID &&
		strings.HasPrefix(a.Resource, "key/") {
		return nil
	}
	return fmt.Errorf("%w: KMS answered for key %q, not this key", kms.ErrAuthentication, got)
}

func (k *MasterKey) err(op string, err error) error {
	return &kms.Error{Op: op, URI: k.uri, Err: err}
}

func contextMap(ec kms.EncryptionContext) map[string]string {
	if len(ec) == 0 {
		return nil
	}
	return map[string]string(ec)
}

// errorCodes maps AWS KMS (and AWS-wide) error codes to sentinels.
var errorCodes = map[string]error{
	"AccessDeniedException":       kms.ErrAccessDenied,
	"UnrecognizedClientException": kms.ErrAccessDenied,
	"InvalidClientTokenId":        kms.ErrAccessDenied,
	"InvalidSignatureException":   kms.ErrAccessDenied,
	"IncompleteSignature":         kms.ErrAccessDenied,
	"MissingAuthenticationToken":  kms.ErrAccessDenied,
	"ExpiredTokenException":       kms.ErrAccessDenied,
	"NotAuthorized":               kms.ErrAccessDenied,

	"DisabledException":          kms.ErrKeyDisabled,
	"KMSInvalidStateException":   kms.ErrKeyDisabled,
	"NotFoundException":          kms.ErrKeyNotFound,
	"InvalidCiphertextException": kms.ErrAuthentication,
	"IncorrectKeyException":      kms.ErrAuthentication,

	"InvalidKeyUsageException":      kms.ErrInvalidInput,
	"InvalidArnException":           kms.ErrInvalidInput,
	"InvalidGrantTokenException":    kms.ErrInvalidInput,
	"UnsupportedOperationException": kms.ErrInvalidInput,
	"ValidationException":           kms.ErrInvalidInput,
	"DryRunOperationException":      kms.ErrInvalidInput,

	"KeyUnavailableException":    kms.ErrUnavailable,
	"DependencyTimeoutException": kms.ErrUnavailable,
	"KMSInternalException":       kms.ErrUnavailable,
	"LimitExceededException":     kms.ErrUnavailable,
	"ThrottlingException":        kms.ErrUnavailable,
	"ServiceUnavailable":         kms.ErrUnavailable,
	"InternalFailure":            kms.ErrUnavailable,
	"RequestTimeout":             kms.ErrUnavailable,
	"RequestTimeoutException":    kms.ErrUnavailable,
}

// mapError maps an AWS SDK error to the kms sentinels, keeping the original
// (operation, HTTP status, request ID, error code and message; never key
// material) wrapped. A cancelled or expired ctx is also wrapped, so
// errors.Is(err, context.Canceled) holds.
func mapError(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("%w: %w: %w", kms.ErrUnavailable, cerr, err)
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w: %w", kms.ErrUnavailable, err)
	}
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		if s, ok := errorCodes[apiErr.ErrorCode()]; ok {
			return fmt.Errorf("%w: %w", s, err)
		}
		// An unknown code: 5xx (or a server fault) is transient, the rest is
		// something wrong with the request.
		var httpErr interface{ HTTPStatusCode() int }
		if apiErr.ErrorFault() == smithy.FaultServer || (errors.As(err, &httpErr) && httpErr.HTTPStatusCode() >= 500) {
			return fmt.Errorf("%w: %w", kms.ErrUnavailable, err)
		}
		return fmt.Errorf("%w: %w", kms.ErrInvalidInput, err)
	}
	// No API error: the request never got an answer (connection refused,
	// DNS, TLS, timeouts, retries exhausted) or credentials could not be
	// retrieved. Both mean KMS cannot be used right now.
	return fmt.Errorf("%w: %w", kms.ErrUnavailable, err)
}
