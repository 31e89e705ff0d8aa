//go:build race

package keyring

// raceEnabled: the race detector slows the many-tenant tests tenfold; they
// run with fewer tenants under it.
const raceEnabled = true
