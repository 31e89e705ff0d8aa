// Package fakegcpkms is an in-process Google Cloud KMS for tests: a real
// gRPC server on a loopback port implementing Encrypt and Decrypt of
// google.cloud.kms.v1.KeyManagementService, so the real
// cloud.google.com/go/kms/apiv1 client (and its retries, status mapping and
// CRC32C fields) is exercised end to end without network or credentials.
//
// Each registered crypto key gets its own random AES-256-GCM key; the
// additional authenticated data is bound as GCM associated data. Request
// CRC32C fields are verified and response CRC32C fields filled in as Cloud
// KMS documents. Test hooks make a key disabled (FailedPrecondition), deny
// access (PermissionDenied), corrupt a response checksum, or stop the server
// (Unavailable).
package fakegcpkms

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"fmt"
	"hash/crc32"
	"net"
	"strings"
	"sync"
	"testing"

	kmsapi "cloud.google.com/go/kms/apiv1"
	"cloud.google.com/go/kms/apiv1/kmspb"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Limits as Cloud KMS documents them.
const (
	maxPlaintext  = 64 << 10
	maxAAD        = 64 << 10
	maxCiphertext = 10*(1<<10) + maxPlaintext
	nonceSize     = 12
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func crc32c(b []byte) int64 { return int64(crc32.Checksum(b, castagnoli)) }

// Server is a fake Cloud KMS. Create it with Start or New.
type Server struct {
	kmspb.UnimplementedKeyManagementServiceServer

	addr string
	srv  *grpc.Server

	mu          sync.Mutex
	keys        map[string]*key
	corruptCRC  bool
	unverified  bool
	stopped     bool
	encryptions int
	decryptions int
}

type key struct {
	aead     cipher.AEAD
	disabled bool
	denied   bool
}

// New starts a server on 127.0.0.1:0. Call Stop when done.
func New() (*Server, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &Server{addr: lis.Addr().String(), srv: grpc.NewServer(), keys: map[string]*key{}}
	kmspb.RegisterKeyManagementServiceServer(s.srv, s)
	go func() { _ = s.srv.Serve(lis) }()
	return s, nil
}

// Start is New for tests: it fails t on error and stops the server when the
// test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	s, err := New()
	if err != nil {
		t.Fatalf("fakegcpkms: %v", err)
	}
	t.Cleanup(s.Stop)
	return s
}

// Addr returns the server's host:port.
func (s *Server) Addr() string { return s.addr }

// ClientOptions returns the options that point a real Cloud KMS client at
// this server: its endpoint, no authentication, plaintext gRPC.
func (s *Server) ClientOptions() []option.ClientOption {
	return []option.ClientOption{
		option.WithEndpoint(s.addr),
		option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())),
	}
}

// Client returns a real Cloud KMS client connected to this server, closed
// when the test ends.
func (s *Server) Client(t testing.TB) *kmsapi.KeyManagementClient {
	t.Helper()
	c, err := kmsapi.NewKeyManagementClient(context.Background(), s.ClientOptions()...)
	if err != nil {
		t.Fatalf("fakegcpkms: client: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// Stop stops the server; later calls see Unavailable. It is idempotent.
func (s *Server) Stop() {
	s.mu.Lock()
	stopped := s.stopped
	s.stopped = true
	s.mu.Unlock()
	if !stopped {
		s.srv.Stop()
	}
}

// AddKey registers a crypto key by its resource name
// (projects/P/locations/L/keyRings/R/cryptoKeys/K) with fresh key material.
func (s *Server) AddKey(name string) {
	var k [32]byte
	if _, err := rand.Read(k[:]); err != nil {
		panic(err)
	}
	block, err := aes.NewCipher(k[:])
	if err != nil {
		panic(err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		panic(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys[name] = &key{aead: aead}
}

// KeyName returns a crypto key resource name for a short key id in a fixed
// test project, location and key ring.
func KeyName(id string) string {
	return "projects/fieldcrypt-test/locations/global/keyRings/test/cryptoKeys/" + id
}

// SetDisabled makes calls with the key fail with FailedPrecondition, as
// Cloud KMS does for a disabled or destroyed primary version.
func (s *Server) SetDisabled(name string, disabled bool) {
	s.with(name, func(k *key) { k.disabled = disabled })
}

// SetDenied makes calls with the key fail with PermissionDenied.
func (s *Server) SetDenied(name string, denied bool) {
	s.with(name, func(k *key) { k.denied = denied })
}

// SetCorruptCRC makes every response carry a wrong checksum (Encrypt's
// ciphertext_crc32c, Decrypt's plaintext_crc32c), as if the response had
// been corrupted in transit, to exercise client-side integrity checks.
func (s *Server) SetCorruptCRC(corrupt bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.corruptCRC = corrupt
}

// SetUnverified makes Encrypt report the request checksums as not verified
// (verified_*_crc32c false), as if the request had been corrupted in
// transit.
func (s *Server) SetUnverified(unverified bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.unverified = unverified
}

// Calls returns how many Encrypt and Decrypt calls reached the server.
func (s *Server) Calls() (encrypt, decrypt int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.encryptions, s.decryptions
}

func (s *Server) with(name string, f func(*key)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k, ok := s.keys[name]
	if !ok {
		panic("fakegcpkms: unknown key " + name)
	}
	f(k)
}

// lookup resolves a crypto key name, or a version of it
// (.../cryptoKeyVersions/1, the only version), to its key.
func (s *Server) lookup(name string) (*key, string, bool, error) {
	base := name
	if i := strings.Index(name, "/cryptoKeyVersions/"); i >= 0 {
		base = name[:i]
		if name[i+len("/cryptoKeyVersions/"):] != "1" {
			return nil, "", false, status.Errorf(codes.NotFound, "CryptoKeyVersion %s not found.", name)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	k, ok := s.keys[base]
	if !ok {
		return nil, "", false, status.Errorf(codes.NotFound, "CryptoKey %s not found.", base)
	}
	if k.denied {
		return nil, "", false, status.Errorf(codes.PermissionDenied, "Permission 'cloudkms.cryptoKeyVersions.useToEncrypt' denied on resource '%s' (or it may not exist).", base)
	}
	if k.disabled {
		return nil, "", false, status.Errorf(codes.FailedPrecondition, "%s/cryptoKeyVersions/1 is not enabled, current state is: DISABLED.", base)
	}
	return k, base + "/cryptoKeyVersions/1", s.corruptCRC, nil
}

func checkCRC(field string, data []byte, crc *wrapperspb.Int64Value) error {
	if crc != nil && crc.GetValue() != crc32c(data) {
		return status.Errorf(codes.InvalidArgument, "The checksum in field %s did not match the data in field %s.", field+"_crc32c", field)
	}
	return nil
}

// Encrypt implements kmspb.KeyManagementServiceServer.
func (s *Server) Encrypt(ctx context.Context, req *kmspb.EncryptRequest) (*kmspb.EncryptResponse, error) {
	s.count(&s.encryptions)
	k, version, corrupt, err := s.lookup(req.GetName())
	if err != nil {
		return nil, err
	}
	switch {
	case len(req.GetPlaintext()) == 0:
		return nil, status.Error(codes.InvalidArgument, "Plaintext is empty.")
	case len(req.GetPlaintext()) > maxPlaintext:
		return nil, status.Errorf(codes.InvalidArgument, "Plaintext is larger than %d bytes.", maxPlaintext)
	case len(req.GetAdditionalAuthenticatedData()) > maxAAD:
		return nil, status.Errorf(codes.InvalidArgument, "AAD is larger than %d bytes.", maxAAD)
	}
	if err := checkCRC("plaintext", req.GetPlaintext(), req.GetPlaintextCrc32C()); err != nil {
		return nil, err
	}
	if err := checkCRC("additional_authenticated_data", req.GetAdditionalAuthenticatedData(), req.GetAdditionalAuthenticatedDataCrc32C()); err != nil {
		return nil, err
	}
	nonce := make([]byte, nonceSize, nonceSize+len(req.GetPlaintext())+16)
	if _, err := rand.Read(nonce); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	ct := k.aead.Seal(nonce, nonce, req.GetPlaintext(), req.GetAdditionalAuthenticatedData())
	resp := &kmspb.EncryptResponse{
		Name:                    version,
		Ciphertext:              ct,
		CiphertextCrc32C:        wrapperspb.Int64(crc32c(ct)),
		VerifiedPlaintextCrc32C: req.GetPlaintextCrc32C() != nil,
		VerifiedAdditionalAuthenticatedDataCrc32C: req.GetAdditionalAuthenticatedDataCrc32C() != nil,
		ProtectionLevel: kmspb.ProtectionLevel_SOFTWARE,
	}
	if corrupt {
		resp.CiphertextCrc32C = wrapperspb.Int64(resp.CiphertextCrc32C.GetValue() ^ 1)
	}
	s.mu.Lock()
	if s.unverified {
		resp.VerifiedPlaintextCrc32C = false
		resp.VerifiedAdditionalAuthenticatedDataCrc32C = false
	}
	s.mu.Unlock()
	return resp, nil
}

// Decrypt implements kmspb.KeyManagementServiceServer.
func (s *Server) Decrypt(ctx context.Context, req *kmspb.DecryptRequest) (*kmspb.DecryptResponse, error) {
	s.count(&s.decryptions)
	if strings.Contains(req.GetName(), "/cryptoKeyVersions/") {
		return nil, status.Error(codes.InvalidArgument, "Decrypt takes a CryptoKey name, not a CryptoKeyVersion.")
	}
	k, _, corrupt, err := s.lookup(req.GetName())
	if err != nil {
		return nil, err
	}
	ct := req.GetCiphertext()
	switch {
	case len(ct) == 0:
		return nil, status.Error(codes.InvalidArgument, "Ciphertext is empty.")
	case len(ct) > maxCiphertext:
		return nil, status.Errorf(codes.InvalidArgument, "Ciphertext is larger than %d bytes.", maxCiphertext)
	case len(req.GetAdditionalAuthenticatedData()) > maxAAD:
		return nil, status.Errorf(codes.InvalidArgument, "AAD is larger than %d bytes.", maxAAD)
	}
	if err := checkCRC("ciphertext", ct, req.GetCiphertextCrc32C()); err != nil {
		return nil, err
	}
	if err := checkCRC("additional_authenticated_data", req.GetAdditionalAuthenticatedData(), req.GetAdditionalAuthenticatedDataCrc32C()); err != nil {
		return nil, err
	}
	if len(ct) < nonceSize+16 {
		return nil, status.Error(codes.InvalidArgument, "Decryption failed: the ciphertext is invalid.")
	}
	pt, err := k.aead.Open(nil, ct[:nonceSize], ct[nonceSize:], req.GetAdditionalAuthenticatedData())
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, "Decryption failed: the ciphertext is invalid.")
	}
	crc := crc32c(pt)
	if corrupt {
		crc ^= 1
	}
	return &kmspb.DecryptResponse{
		Plaintext:       pt,
		PlaintextCrc32C: wrapperspb.Int64(crc),
		UsedPrimary:     true,
		ProtectionLevel: kmspb.ProtectionLevel_SOFTWARE,
	}, nil
}

func (s *Server) count(n *int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	*n++
}

// String describes the server for test logs.
func (s *Server) String() string { return fmt.Sprintf("fakegcpkms(%s)", s.addr) }
