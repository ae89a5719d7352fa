//go:build !linux

package testenv

import "errors"

// ErrNoSeccomp is returned by FailSyncs where it cannot work.
var ErrNoSeccomp = errors.New("seccomp filters are not available")

// FailSyncs needs Linux's seccomp.
func FailSyncs() error { return ErrNoSeccomp }
