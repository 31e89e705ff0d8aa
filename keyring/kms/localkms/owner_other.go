//go:build !unix

package localkms

import "io/fs"

// On systems without Unix owners and mode bits, only the mode check of Open
// applies (as far as Go reports modes there).
func checkOwner(string, fs.FileInfo) error { return nil }

func checkDirs(string) error { return nil }
