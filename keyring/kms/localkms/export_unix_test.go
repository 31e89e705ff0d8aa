//go:build unix

package localkms

// SetEUID makes the permission checks act as if the process ran as uid, and
// returns a function that undoes it. Tests only; not safe for parallel use.
func SetEUID(uid int) (restore func()) {
	old := geteuid
	geteuid = func() int { return uid }
	return func() { geteuid = old }
}
