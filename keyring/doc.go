// Package keyring holds fieldcrypt's key-encryption keys (KEKs) and hands
// them to the envelope: a *Keyring implements envelope.KeySource.
//
// # The common case
//
// An application configures one master key per data classification, opens a
// store in its own database, and passes the keyring to the envelope:
//
//	cfg := keyring.Config{
//		Name: "billing",
//		Classes: map[string]keyring.ClassConfig{
//			"critical": {MasterKey: "aws-kms://arn:aws:kms:eu-west-1:111122223333:key/…"},
//			"high":     {MasterKey: "aws-kms://arn:aws:kms:eu-west-1:111122223333:key/…", TenantScoped: true},
//		},
//	}
//	store, err := keyring.NewGormStore(ctx, db) // tables fieldcrypt_keks, fieldcrypt_kek_scopes
//	kr, err := keyring.New(cfg, store)
//	defer kr.Close()
//	env := envelope.New(kr)
//	ct, err := env.Seal(ctx, envelope.Binding{Class: envelope.Critical, Table: "users", Column: "ssn", Row: id}, ssn)
//
// Every value the envelope seals or opens asks the keyring for one KEK. The
// keyring answers from memory: a KEK is unwrapped by the KMS once and then
// cached, so a million values cost a handful of KMS calls, and a KMS outage
// shorter than Config.MaxAge fails no reads and no writes.
//
// # Why this shape
//
// Keys never cross classification levels: each class has its own master key
// (Config.Validate refuses one master key shared by two classes) and its own
// line of KEK versions, optionally one line per tenant so that a tenant can
// be crypto-shredded alone (ShredTenant). KEKs are generated locally
// (crypto/rand) and stored only wrapped by the class's master key, bound to
// an encryption context naming the keyring, class, tenant and version, so a
// wrapped key copied to another slot does not unwrap. The store never sees
// a plaintext key; the KMS sees one wrap per KEK version and one unwrap per
// process per version per cache TTL.
//
// # Lifecycle
//
// Per scope (class, tenant) there are versions 1..n in one of four states:
//
//	active        the primary: new values are sealed under it (exactly one)
//	decrypt-only  a former primary: opens old values (Rotate moves it here)
//	retired       refuses to open values; reversible (Reactivate), so an
//	              operator can retire a version, watch for failures, and
//	              only then destroy it
//	destroyed     crypto-shredded: the wrapped key is deleted, a tombstone
//	              remains so lookups fail with envelope.ErrKeyDestroyed
//	              rather than envelope.ErrUnknownKey; irreversible
//
// Search keys (the versions deterministic encryption and blind indexes
// derive from) have a lifecycle of their own: version 1 at first;
// RotateSearch makes the current primary the first search key and keeps the
// older ones live (equality queries cover all of them) until
// FinishSearchRotation drops them, once the indexes are rebuilt. Rotate
// never changes them. A live search key cannot be retired or destroyed.
//
// Master key rotation (RewrapAll) unwraps every KEK of a class under the old
// master key and wraps it under the new one: O(number of KEKs) KMS calls,
// no data touched. It is resumable: re-running it skips what is done.
//
// # Cache semantics
//
//   - A cached KEK is served fresh for Config.CacheTTL (default 15 min)
//     after its last successful unwrap. After that it is served stale while
//     one background refresh re-reads the store and re-unwraps it.
//   - If the refresh fails because the KMS or the store is unreachable, the
//     entry keeps being served until Config.MaxAge (default 24 h) after its
//     last successful unwrap; then lookups fail with
//     envelope.ErrKeyUnavailable (and the kms sentinel, e.g.
//     kms.ErrUnavailable), naming the scope and master key URI.
//   - If the KMS answers definitively (kms.ErrAccessDenied, ErrKeyDisabled,
//     ErrKeyNotFound, ErrAuthentication) the entry is evicted at once:
//     revoking the master key takes effect within CacheTTL.
//   - The primary version and search keys of a scope are cached the same
//     way: a rotation, retirement or destruction by another process is seen
//     within CacheTTL (operations in this process are seen at once).
//   - Concurrent misses share one KMS call (singleflight), and a failed
//     unwrap is remembered for WithFailureBackoff (default 1 s) so that,
//     during an outage, lookups without a servable copy fail fast instead
//     of each waiting on the KMS.
//   - A cached KEK object is kept across successful refreshes (a version's
//     key never changes), so KEKs leave the cache only when they are
//     destroyed, retired, revoked, past MaxAge, or at Close. Evicted KEKs
//     are zeroed (KEK.Destroy) at the first cache maintenance (any miss or
//     refresh) once they have been out of the cache for the evict grace
//     (WithEvictGrace, default 1 min): the envelope uses a KEK for one
//     value and drops it, so no caller still holds it by then. A destroyed
//     (crypto-shredded) version is zeroed at once, in-flight users
//     included: that is the point. Close zeroes everything.
//
// Stats reports KMS calls, hits, misses, stale serves and errors.
//
// # Tenants
//
// A class with TenantScoped has one line of KEKs per tenant, created on
// first use (PrimaryKEK or SearchKEKs; see WithoutAutoCreate), plus the
// tenant-less scope. A class without it only has the tenant-less scope:
// a lookup naming a tenant fails with envelope.ErrInvalidInput, because
// the envelope binds the KEK's exact scope and the keyring will not
// silently hand out the class-wide key for a tenant.
package keyring
