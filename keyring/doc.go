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
//	kr, err := keyring.New(cfg, store)          // sealed from its first write
//	defer kr.Close()
//	env := envelope.New(kr)
//	ct, err := env.Seal(ctx, envelope.Binding{Class: envelope.Critical, Table: "users", Column: "ssn", Row: id}, ssn)
//
// Every value the envelope seals or opens asks the keyring for one KEK. The
// keyring answers from memory: a KEK is unwrapped once and then cached, so
// a million values, or five thousand tenants, cost a handful of KMS calls,
// and a KMS outage shorter than Config.MaxAge fails no reads and no writes.
// Close it when done: it cancels its background work and closes the
// master keys it opened.
//
// # Why this shape
//
// Keys never cross classification levels: each class has its own master key
// (Config.Validate refuses one master key shared by two classes) and its own
// line of KEK versions, optionally one line per tenant so that a tenant can
// be crypto-shredded alone (ShredTenant). KEKs are generated locally
// (crypto/rand) and stored only wrapped: a class-wide KEK by the class's
// master key, in the KMS, under an encryption context naming the keyring,
// class and version; a tenant's KEK by the class key (below), under a key
// derived for that keyring, class, tenant and version (Record.WrappedBy).
// Either way a wrapped KEK copied to another slot does not unwrap. The
// store never sees a plaintext key. The KMS sees one wrap per class-wide
// KEK version and per class key, and one unwrap per process per
// class-wide version and per class key per cache TTL: KMS calls scale with
// classes and key versions, never with values or tenants.
//
// # The store is not trusted
//
// Whoever can write the keyring's tables (a database administrator, an SQL
// injection) but not call the KMS must not be able to choose the key new
// values are sealed under. So:
//
//   - A KEK is unwrapped only under its class's ClassConfig.MasterKey or one
//     of its PreviousMasterKeys. The master key URI a stored record names
//     only selects among those; any other is refused (ErrUntrustedKey).
//   - Each class has a class key: 32 random bytes stored only wrapped by the
//     class's master key (ECPurpose "class-key"). The keyring derives from
//     it a MAC key (and, apart, the root that wraps tenant KEKs), and every
//     scope state it writes carries an Epoch (+1 per write) and a MAC over
//     everything it says: versions, states, wrappings, master key URIs,
//     wrapped keys (hashed), times, search keys. States are verified
//     on every read, before any use, and never built on unless verified.
//   - Invariants are checked (the primary is the newest version not
//     destroyed: only Rotate makes a primary), and a process refuses an
//     epoch lower than one it has seen (a rolled-back state).
//
// A failure is ErrTampered (with envelope.ErrKeyUnavailable) and an audit
// event (keyring.tamper): nothing is sealed or opened under that state.
// What this does not detect (chiefly: a complete older snapshot, such as a
// restored backup, shown to a process that never saw a newer state) is in
// docs/threat-model.md. A store written before sealing existed is refused
// (ErrUnsealed) until Upgrade seals it once (fieldcrypt keys upgrade);
// Config.AllowUnsealedStore opens a migration window meanwhile. New
// keyrings are sealed from their first write. Sealing costs one class key
// unwrap per class per process per cache TTL, and no KMS call per read of
// a scope state.
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
// Retire and Destroy refuse (ErrTooSoon) a version until MaxStateAge +
// DemotionSlack (3 min) after Rotate demoted it (Record.DemotedAt;
// KEKInfo.InUseUntil): until then a running process may still hold it as
// its primary and seal new values under it, which destroying it would
// lose. Force overrides, for a compromised key.
//
// Search keys (the versions deterministic encryption and blind indexes
// derive from) have a lifecycle of their own: version 1 at first;
// RotateSearch makes the current primary the first search key and keeps the
// older ones live (equality queries cover all of them) until
// FinishSearchRotation drops them, once the indexes are rebuilt. Rotate
// never changes them. A live search key cannot be retired or destroyed.
//
// Master key rotation (RewrapAll) unwraps every KEK of a class, and its
// class key, under the old master key and wraps it under the new one:
// O(number of KEKs) KMS calls, no data touched. It is resumable: re-running
// it skips what is done. Every process must trust the new master key before
// it starts (list it in PreviousMasterKeys); RewrapReport.Config then names
// it as MasterKey and keeps the old one in PreviousMasterKeys, until no KEK
// is left under it (docs/operations.md has the runbook).
//
// # KMS outages: fail fast, recover fast
//
// Each master key has a circuit breaker (WithCircuitBreaker). The first
// call that finds the KMS unreachable (kms.ErrUnavailable, after the SDK's
// own retries) opens it; while it is open, calls to that master key fail
// at once with ErrCircuitOpen (and kms.ErrUnavailable; lookups add
// envelope.ErrKeyUnavailable) instead of each waiting seconds for the
// SDK's retries, and the KMS sees only one background probe, 250 ms after
// opening, then with the wait doubling up to 1 s. The first probe the KMS
// answers closes the breaker and clears the failures remembered meanwhile,
// so lookups recover within about a second of the KMS returning. Cached
// KEKs keep being served throughout, up to MaxAge.
//
// # Cache semantics
//
// Two things are cached, with different bounds, because they change for
// different reasons: a scope's state (which version is primary, which are
// retired or destroyed, the search keys: a store read) and key material
// (a KMS unwrap).
//
//   - A scope state is served for Config.StateRefresh (default 30 s) after
//     the read that fetched it started; then it is served while one
//     background read refreshes it. A rotation, retirement or destruction
//     by another process is therefore seen within StateRefresh plus one
//     store read (in this process, at once). State refreshes make no KMS
//     call.
//   - No lookup ever uses a scope state older than MaxStateAge (2 min, a
//     constant so that Destroy knows the bound every process obeys): past
//     it, lookups of that scope read the store and, if it does not answer,
//     fail with envelope.ErrKeyUnavailable (and the store's error). Failed
//     reads are remembered for WithFailureBackoff, so they fail fast.
//   - A cached KEK (or class key) is served fresh for Config.CacheTTL
//     (default 15 min) after its last successful unwrap. After that it is
//     served stale while one background refresh unwraps it again (from the
//     cached state: no store read).
//   - If the KMS is unreachable, the entry keeps being served until
//     Config.MaxAge (default 24 h) after its last successful unwrap; then
//     lookups fail with envelope.ErrKeyUnavailable (and the kms sentinel,
//     e.g. kms.ErrUnavailable), naming the scope and master key URI.
//   - If the KMS answers definitively (kms.ErrAccessDenied, ErrKeyDisabled,
//     ErrKeyNotFound, ErrAuthentication) the entry is evicted at once:
//     revoking the master key takes effect within CacheTTL.
//   - Concurrent misses share one KMS call or store read (singleflight),
//     and a failed unwrap is remembered for WithFailureBackoff (default
//     1 s) so that, during an outage, lookups without a servable copy fail
//     fast instead of each waiting on the KMS.
//   - A cached KEK object is kept across successful refreshes (a version's
//     key never changes), so KEKs leave the cache only when they are
//     destroyed, retired, revoked, past MaxAge, or at Close. Evicted KEKs
//     are zeroed (KEK.Destroy) at the first cache maintenance (any miss or
//     refresh) once they have been out of the cache for the evict grace
//     (WithEvictGrace, default 1 min): the envelope uses a KEK for one
//     value and drops it, so no caller still holds it by then. A destroyed
//     (crypto-shredded) version is zeroed as soon as any state read shows
//     it destroyed, in-flight users included: a seal still holding it fails
//     with envelope.ErrKeyDestroyed instead of storing a value nobody can
//     read. Close zeroes everything.
//   - A tenant KEK wrapped by the class key is cached as long as the class
//     key is, and refreshed with it: it costs no KMS call of its own, and
//     when the KMS refuses the class key (a revoked master key) every
//     tenant KEK of the class leaves the cache with it.
//
// Stats reports KMS calls (and those a breaker refused), hits, misses,
// stale serves, store reads, local unwraps under class keys and errors.
//
// Close cancels every background refresh, shared load and breaker probe
// (their KMS and store calls see a cancelled context), waits for them,
// zeroes the cache, and closes the master keys the keyring opened: it
// returns at once even with the KMS hung.
//
// # Tenants
//
// A class with TenantScoped has one line of KEKs per tenant, created on
// first use (PrimaryKEK or SearchKEKs; see WithoutAutoCreate) or ahead of
// traffic in bulk (EnsureTenants; fieldcrypt init --tenants-file), plus
// the tenant-less scope. A class without it only has the tenant-less
// scope: a lookup naming a tenant fails with envelope.ErrInvalidInput,
// because the envelope binds the KEK's exact scope and the keyring will
// not silently hand out the class-wide key for a tenant.
//
// Tenant KEKs are wrapped by the class key, not by the KMS (classwrap.go
// says how): a process that serves 5,000 tenants unwraps the class key
// once and each tenant's KEK locally, instead of making 5,000 KMS calls at
// start and again every CacheTTL. Crypto-shredding is unchanged: a tenant
// KEK is random, and deleting its only wrapped copy destroys it. Tenant
// KEKs that an earlier version wrapped in the KMS keep opening (one KMS
// call each); Upgrade (fieldcrypt keys upgrade) or RewrapAll moves them
// under the class key. docs/threat-model.md says what changed.
//
// # Least privilege
//
// Config.Decrypt and Config.EncryptOnly limit a process to the classes it
// may open, and those it may only seal: a web front end that writes card
// numbers but never reads them lists that class in EncryptOnly. Anything
// else fails with ErrAccessDenied before any key is read or unwrapped, and
// is audited. It is defence in depth, inside the process, on top of the
// KMS key policies (docs/operations.md has matching ones): an encrypt-only
// process still unwraps the primary KEK (it seals with it), so only the
// keyring, not the KMS, can tell sealing from opening.
//
// # Metrics and traces
//
// The keyring reports through OpenTelemetry: KMS calls by backend,
// operation and outcome with their latency (fieldcrypt.kms.calls,
// fieldcrypt.kms.duration), KEK cache hits, misses, stale serves and
// refreshes (fieldcrypt.kek.cache), circuit breakers, and spans around KMS
// calls and KEK loads and refreshes. It uses the global providers unless
// given WithMeterProvider / WithTracerProvider; they do nothing until the
// application installs one. Labels never carry a key, a URI or (without
// WithTenantLabels) a tenant. Stats keeps counting without OpenTelemetry.
// docs/operations.md lists the metrics and the alerts to set.
package keyring
