// Package hooks carries settings that fieldcrypt's own packages accept
// from each other but do not offer in their public API: the CLI's tests
// run the keyring on a clock of their own, and a test clock has no place
// among the keyring's options.
//
// A package that offers a hook sets it in an init function; a package
// that uses one imports the offering package too (so the hook is set) and
// converts the result to that package's type.
package hooks

import "time"

// KeyringClock is set by package keyring. It returns a keyring.Option (as
// any: this package cannot import keyring) that makes the keyring read the
// time from now instead of time.Now.
var KeyringClock func(now func() time.Time) any
