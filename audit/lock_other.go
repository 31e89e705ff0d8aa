//go:build !unix

package audit

import (
	"fmt"
	"os"
)

// lockLog creates path exclusively for the life of the writer: one
// process writes a log. A crash leaves the file behind; remove it once
// no writer runs.
func lockLog(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("%w (%s exists: %v)", ErrLogInUse, path, err)
	}
	return func() {
		f.Close()
		os.Remove(path)
	}, nil
}
