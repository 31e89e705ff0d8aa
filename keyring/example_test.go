package keyring_test

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/glebarez/sqlite"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/fieldcrypt/fieldcrypt/envelope"
	"github.com/fieldcrypt/fieldcrypt/keyring"
	"github.com/fieldcrypt/fieldcrypt/keyring/kms"
)

// demoKey stands in for a KMS master key (the real backends live in
// keyring/kms/awskms, gcpkms, localkms): AES-256-GCM with the encryption
// context as associated data.
type demoKey struct {
	uri  string
	aead cipher.AEAD
}

func newDemoKey(uri string) *demoKey {
	raw := make([]byte, 32)
	_, _ = rand.Read(raw)
	b, _ := aes.NewCipher(raw)
	g, _ := cipher.NewGCM(b)
	return &demoKey{uri: uri, aead: g}
}

func (d *demoKey) URI() string { return d.uri }

func (d *demoKey) Close() error { return nil }

func (d *demoKey) Wrap(_ context.Context, key []byte, ec kms.EncryptionContext) ([]byte, error) {
	nonce := make([]byte, d.aead.NonceSize())
	_, _ = rand.Read(nonce)
	return d.aead.Seal(nonce, nonce, key, ec.Canonical()), nil
}

func (d *demoKey) Unwrap(_ context.Context, w []byte, ec kms.EncryptionContext) ([]byte, error) {
	n := d.aead.NonceSize()
	if len(w) < n {
		return nil, &kms.Error{Op: "unwrap", URI: d.uri, Err: kms.ErrAuthentication}
	}
	out, err := d.aead.Open(nil, w[:n], w[n:], ec.Canonical())
	if err != nil {
		return nil, &kms.Error{Op: "unwrap", URI: d.uri, Err: kms.ErrAuthentication}
	}
	return out, nil
}

const (
	criticalKey = "aws-kms://arn:aws:kms:eu-west-1:111122223333:key/0b1c2d3e-0000-4000-8000-000000000001"
	highKey     = "gcp-kms://projects/acme/locations/europe-west1/keyRings/fieldcrypt/cryptoKeys/high"
)

// The common case: a keyring over tables in the application's database,
// handed to the envelope as its KeySource.
func Example() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "keyring-example")
	defer os.RemoveAll(dir)
	db, _ := gorm.Open(sqlite.Open(filepath.Join(dir, "app.db")), &gorm.Config{Logger: logger.Discard})

	cfg := keyring.Config{
		Name: "billing",
		Classes: map[string]keyring.ClassConfig{
			"critical": {MasterKey: criticalKey},
			"high":     {MasterKey: highKey, TenantScoped: true},
			"public":   {},
		},
	}
	store, err := keyring.NewGormStore(ctx, db) // creates fieldcrypt_keks, fieldcrypt_kek_scopes
	if err != nil {
		panic(err)
	}
	// In production, omit WithMasterKeys: master keys are opened by URI
	// through the kms registry (import keyring/kms/awskms etc.).
	kr, err := keyring.New(cfg, store, keyring.WithMasterKeys(newDemoKey(criticalKey), newDemoKey(highKey)))
	if err != nil {
		panic(err)
	}
	defer kr.Close()
	if _, err := kr.Init(ctx); err != nil { // version 1 of every class
		panic(err)
	}

	env := envelope.New(kr)
	for i := 0; i < 1000; i++ {
		b := envelope.Binding{Class: envelope.Critical, Table: "users", Column: "ssn", Row: fmt.Sprint(i)}
		ct, err := env.Seal(ctx, b, []byte("078-05-1120"))
		if err != nil {
			panic(err)
		}
		if _, err := env.Open(ctx, b, ct); err != nil {
			panic(err)
		}
	}
	// A tenant of a tenant-scoped class gets its own KEK on first use.
	b := envelope.Binding{Class: envelope.High, Tenant: "acme", Table: "users", Column: "email"}
	ct, _ := env.Seal(ctx, b, []byte("jane@example.com"))
	h, _ := envelope.Inspect(ct)
	fmt.Println("sealed under", envelope.KEKRef{Class: h.Class, Tenant: "acme", Version: h.KEKVersion})
	st := kr.Stats()
	fmt.Printf("KMS calls: %d wraps, %d unwraps\n", st.KMSWrapCalls, st.KMSUnwrapCalls)
	// One wrap per KEK and one per class key (which authenticates what the
	// store says about the class's KEKs); no unwrap: this process created them.
	// Output:
	// sealed under high/tenant=acme/v1
	// KMS calls: 5 wraps, 0 unwraps
}

func ExampleConfig_Validate() {
	cfg := keyring.Config{
		Name: "billing",
		Classes: map[string]keyring.ClassConfig{
			"critical": {MasterKey: criticalKey},
			"high":     {MasterKey: criticalKey},
			"public":   {MasterKey: "local:///etc/fieldcrypt/public.key"},
		},
	}
	err := cfg.Validate()
	fmt.Println(errors.Is(err, keyring.ErrInvalidConfig))
	fmt.Println(err)
	// Output:
	// true
	// keyring: invalid configuration: class "high": master key "aws-kms://arn:aws:kms:eu-west-1:111122223333:key/0b1c2d3e-0000-4000-8000-000000000001" is also the master key of class "critical" (keys never cross classification levels)
	// keyring: invalid configuration: class "public": public data is stored in clear and takes no master key (got "local:///etc/fieldcrypt/public.key")
}

func ExampleKeyring_Rotate() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "keyring-example")
	defer os.RemoveAll(dir)
	cfg := keyring.Config{Name: "billing", Classes: map[string]keyring.ClassConfig{"critical": {MasterKey: criticalKey}}}
	kr, _ := keyring.New(cfg, keyring.NewFileStore(filepath.Join(dir, "keks.json")), keyring.WithMasterKeys(newDemoKey(criticalKey)))
	defer kr.Close()
	scope := envelope.Scope{Class: envelope.Critical}

	_, _ = kr.Init(ctx)
	_, _ = kr.Rotate(ctx, scope)       // v2 seals new values; v1 still opens old ones
	_, _ = kr.RotateSearch(ctx, scope) // blind indexes move to v2; v1 stays queryable
	_, _ = kr.FinishSearchRotation(ctx, scope)
	v1 := envelope.KEKRef{Class: envelope.Critical, Version: 1}
	_, err := kr.Retire(ctx, v1)
	// Refused: other processes may still seal under v1 until they re-read
	// the keyring (KEKInfo.InUseUntil: MaxStateAge + DemotionSlack after
	// the rotation). Wait; here, with no other process, force it.
	fmt.Println(errors.Is(err, keyring.ErrTooSoon))
	_, _ = kr.Retire(ctx, v1, keyring.Force())
	_, err = kr.Destroy(ctx, v1, keyring.Force(),
		keyring.WithDestroyCheck(func(ctx context.Context, ref envelope.KEKRef) error {
			return nil // e.g. count rows still sealed under ref
		}))
	if err != nil {
		panic(err)
	}
	list, _ := kr.List(ctx)
	for _, k := range list {
		fmt.Println(k.Ref, k.State, "primary:", k.Primary, "search rank:", k.SearchRank)
	}
	_, err = kr.KEK(ctx, envelope.KEKRef{Class: envelope.Critical, Version: 1})
	fmt.Println(errors.Is(err, envelope.ErrKeyDestroyed))
	// Output:
	// true
	// critical/v1 destroyed primary: false search rank: 0
	// critical/v2 active primary: true search rank: 1
	// true
}

func ExampleKeyring_RewrapAll() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "keyring-example")
	defer os.RemoveAll(dir)
	newKey := "aws-kms://arn:aws:kms:eu-west-1:111122223333:key/0b1c2d3e-0000-4000-8000-000000000002"
	cfg := keyring.Config{Name: "billing", Classes: map[string]keyring.ClassConfig{"critical": {MasterKey: criticalKey}}}
	kr, _ := keyring.New(cfg, keyring.NewFileStore(filepath.Join(dir, "keks.json")),
		keyring.WithMasterKeys(newDemoKey(criticalKey), newDemoKey(newKey)))
	defer kr.Close()
	_, _ = kr.Init(ctx)
	_, _ = kr.Rotate(ctx, envelope.Scope{Class: envelope.Critical})

	rep, err := kr.RewrapAll(ctx, envelope.Critical, newKey)
	if err != nil {
		panic(err)
	}
	fmt.Println("rewrapped:", rep.Rewrapped)
	fmt.Println("persist:", rep.Config.Classes["critical"].MasterKey == newKey)
	// Output:
	// rewrapped: 2
	// persist: true
}

func ExampleKeyring_ShredTenant() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "keyring-example")
	defer os.RemoveAll(dir)
	cfg := keyring.Config{Name: "billing", Classes: map[string]keyring.ClassConfig{"high": {MasterKey: highKey, TenantScoped: true}}}
	kr, _ := keyring.New(cfg, keyring.NewFileStore(filepath.Join(dir, "keks.json")), keyring.WithMasterKeys(newDemoKey(highKey)))
	defer kr.Close()
	acme := envelope.Scope{Class: envelope.High, Tenant: "acme"}
	_, _ = kr.PrimaryKEK(ctx, acme)
	_, _ = kr.Rotate(ctx, acme)

	rep, _ := kr.ShredTenant(ctx, "acme")
	for _, d := range rep.Destroyed {
		fmt.Println("destroyed", d.Ref)
	}
	_, err := kr.PrimaryKEK(ctx, acme)
	fmt.Println(errors.Is(err, envelope.ErrKeyDestroyed))
	// Output:
	// destroyed high/tenant=acme/v1
	// destroyed high/tenant=acme/v2
	// true
}

// A keyring file written before keyrings were sealed is refused until
// Upgrade seals it, once; AllowUnsealedStore bridges the migration.
func ExampleKeyring_Upgrade() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "keyring-example")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "keks.json")
	mk := newDemoKey(criticalKey)

	// What an earlier version stored: one KEK, no class key, no MAC.
	raw := make([]byte, envelope.KEKSize)
	_, _ = rand.Read(raw)
	wrapped, _ := mk.Wrap(ctx, raw, kms.EncryptionContext{keyring.ECClass: "critical", keyring.ECKEKVersion: "1", keyring.ECKeyring: "billing"})
	legacy, _ := json.Marshal(map[string]any{"format": "fieldcrypt-keyring/v1", "scopes": []any{map[string]any{
		"class": "critical", "search": []int{1}, "keks": []any{map[string]any{
			"version": 1, "state": "active", "master_key": criticalKey, "wrapped": wrapped,
			"created_at": "2025-06-01T00:00:00Z", "updated_at": "2025-06-01T00:00:00Z"}}}}})
	_ = os.WriteFile(path, legacy, 0o600)

	cfg := keyring.Config{Name: "billing", Classes: map[string]keyring.ClassConfig{"critical": {MasterKey: criticalKey}}}
	kr, _ := keyring.New(cfg, keyring.NewFileStore(path), keyring.WithMasterKeys(mk))
	defer kr.Close()
	_, err := kr.PrimaryKEK(ctx, envelope.Scope{Class: envelope.Critical})
	fmt.Println(errors.Is(err, keyring.ErrUnsealed))

	rep, err := kr.Upgrade(ctx) // you vouch for the state as it is now
	if err != nil {
		panic(err)
	}
	fmt.Println(rep.Classes[0].Class, "class key created:", rep.Classes[0].ClassKeyCreated, "sealed:", rep.Classes[0].Sealed)
	kek, err := kr.PrimaryKEK(ctx, envelope.Scope{Class: envelope.Critical})
	fmt.Println(kek.Ref(), err)
	// Output:
	// true
	// critical class key created: true sealed: [critical]
	// critical/v1 <nil>
}

// Provisioning the tenants of an import ahead of their traffic: their KEKs
// are wrapped by the class key, so thousands cost no KMS call each, and a
// process that serves them unwraps the class key once.
func ExampleKeyring_EnsureTenants() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "keyring-example")
	defer os.RemoveAll(dir)
	cfg := keyring.Config{Name: "billing", Classes: map[string]keyring.ClassConfig{"high": {MasterKey: highKey, TenantScoped: true}}}
	mk := newDemoKey(highKey)
	store := keyring.NewFileStore(filepath.Join(dir, "keyring.json"))
	admin, _ := keyring.New(cfg, store, keyring.WithMasterKeys(mk))
	defer admin.Close()
	tenants := make([]string, 100)
	for i := range tenants {
		tenants[i] = fmt.Sprintf("tenant-%03d", i)
	}
	rep, err := admin.EnsureTenants(ctx, tenants)
	if err != nil {
		panic(err)
	}
	fmt.Println("created:", len(rep.Created), "wrapped by:", rep.Created[0].WrappedBy)
	fmt.Println("KMS calls:", admin.Stats().KMSCalls(), "(the class key)")

	app, _ := keyring.New(cfg, store, keyring.WithMasterKeys(mk))
	defer app.Close()
	for _, t := range tenants {
		if _, err := app.PrimaryKEK(ctx, envelope.Scope{Class: envelope.High, Tenant: t}); err != nil {
			panic(err)
		}
	}
	fmt.Println("a new process serving all of them, KMS calls:", app.Stats().KMSCalls())
	// Output:
	// created: 100 wrapped by: class-key
	// KMS calls: 1 (the class key)
	// a new process serving all of them, KMS calls: 1
}

// A service that writes card numbers but never reads them: the keyring
// refuses to open its values before touching any key, whatever the KMS
// would allow.
func ExampleConfig_encryptOnly() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "keyring-example")
	defer os.RemoveAll(dir)
	store := keyring.NewFileStore(filepath.Join(dir, "keyring.json"))
	cfg := keyring.Config{Name: "billing", Classes: map[string]keyring.ClassConfig{
		"critical": {MasterKey: criticalKey},
		"high":     {MasterKey: highKey},
	}}
	cfg.EncryptOnly = []string{"critical"} // high: in neither list, so not at all
	kr, err := keyring.New(cfg, store, keyring.WithMasterKeys(newDemoKey(criticalKey), newDemoKey(highKey)))
	if err != nil {
		panic(err)
	}
	defer kr.Close()
	env := envelope.New(kr)
	card := envelope.Binding{Class: envelope.Critical, Table: "payments", Column: "pan", Row: "42"}
	ct, err := env.Seal(ctx, card, []byte("4111111111111111"))
	fmt.Println("seal:", err)
	_, err = env.Open(ctx, card, ct)
	fmt.Println("open denied:", errors.Is(err, keyring.ErrAccessDenied))
	_, err = env.Seal(ctx, envelope.Binding{Class: envelope.High, Table: "users", Column: "email"}, []byte("a@b.c"))
	fmt.Println("another class denied:", errors.Is(err, keyring.ErrAccessDenied))
	// Output:
	// seal: <nil>
	// open denied: true
	// another class denied: true
}
