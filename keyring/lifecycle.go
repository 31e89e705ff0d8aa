package keyring

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/fieldcrypt/fieldcrypt/envelope"
)

// The keyring's own goroutines: background refreshes, the loads that
// concurrent lookups share (singleflight), and circuit-breaker probes. Each
// runs under a context derived from the keyring's lifetime (k.life), which
// Close cancels, and is counted so that Close can wait for it.

// closeWait bounds how long Close waits for its goroutines once it has
// cancelled them. Only a master key or store that ignores its context makes
// Close wait that long; tests shorten it.
var closeWait = 5 * time.Second

// enter counts a goroutine doing work for the keyring in wg, unless the
// keyring is closed. The caller must call wg.Done when the work ends.
func (k *Keyring) enter(wg *sync.WaitGroup) bool {
	k.mu.RLock()
	defer k.mu.RUnlock()
	if k.closed.Load() { // set under k.mu: no Add once Close waits
		return false
	}
	wg.Add(1)
	return true
}

// spawn runs fn in a counted goroutine unless the keyring is closed.
func (k *Keyring) spawn(fn func()) bool { return k.spawnIn(&k.wg, fn) }

// spawnProber runs a circuit-breaker probe loop. Probers are counted
// apart: they run as long as the KMS is down, and tests wait for
// refreshes (k.wg) without waiting for the KMS to return.
func (k *Keyring) spawnProber(fn func()) bool { return k.spawnIn(&k.probers, fn) }

func (k *Keyring) spawnIn(wg *sync.WaitGroup, fn func()) bool {
	if !k.enter(wg) {
		return false
	}
	go func() {
		defer wg.Done()
		fn()
	}()
	return true
}

// shared runs fn once for all concurrent callers with the same key, in a
// counted goroutine, with a context that keeps ctx's values but not its
// cancellation, is bounded by the op timeout and is cancelled by Close: one
// caller giving up never fails the others. A caller stops waiting when its
// own ctx ends; fail turns that error (or ErrClosed) into the caller's.
//
// Inside the keyring's own work (a shared load that needs the class key, a
// background refresh), ctx is already bounded and detached: the nested
// load runs under it and its result, error included, is awaited, so the
// error names what failed rather than a deadline.
func (k *Keyring) shared(ctx context.Context, key string, fail func(error) error, fn func(ctx context.Context) (any, error)) (any, error) {
	nested := ctx.Value(ownWork{}) != nil
	ch := k.sf.DoChan(key, func() (any, error) {
		if !k.enter(&k.wg) {
			return nil, fail(ErrClosed)
		}
		defer k.wg.Done()
		if nested {
			return fn(ctx)
		}
		dctx, cancel := k.detached(ctx)
		defer cancel()
		return fn(dctx)
	})
	if nested {
		r := <-ch
		return r.Val, r.Err
	}
	select {
	case r := <-ch:
		return r.Val, r.Err
	case <-ctx.Done():
		return nil, fail(ctx.Err())
	}
}

// ownWork marks the contexts of the keyring's own work (see shared).
type ownWork struct{}

// detached returns a context for work shared by several callers: it keeps
// ctx's values, drops its cancellation, is bounded by the op timeout, and
// ends when the keyring is closed.
func (k *Keyring) detached(ctx context.Context) (context.Context, context.CancelFunc) {
	c, cancel := context.WithTimeout(context.WithValue(context.WithoutCancel(ctx), ownWork{}, true), k.opTO)
	stop := context.AfterFunc(k.life, cancel)
	return c, func() { stop(); cancel() }
}

// background returns the context of a background refresh: bounded by the
// op timeout, ended by Close.
func (k *Keyring) background() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithValue(k.life, ownWork{}, true), k.opTO)
}

// Close stops the keyring: it cancels every background refresh, shared load
// and circuit-breaker probe (their KMS and store calls get a cancelled
// context), waits for them, zeroes every cached KEK and class key, and
// closes the master keys the keyring opened (those that implement
// io.Closer; keys given with WithMasterKeys belong to the caller). A KMS
// that hangs does not delay it: its calls are cancelled. Only a master
// key or store that ignores its context can keep Close waiting, for at
// most 5 s; Close then returns an error wrapping ErrClosed, and whatever
// those calls return later is discarded.
//
// KEKs obtained from the keyring must not be used after Close. Lookups
// after Close fail with ErrClosed. Closing twice is a no-op.
func (k *Keyring) Close() error {
	k.mu.Lock()
	if k.closed.Load() {
		k.mu.Unlock()
		return nil
	}
	k.closed.Store(true) // under k.mu: enter checks it under k.mu too
	k.mu.Unlock()
	k.stop()
	var errs []error
	done := make(chan struct{})
	go func() {
		k.wg.Wait()
		k.probers.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(closeWait):
		errs = append(errs, fmt.Errorf("%w: background KMS or store calls still running %v after they were cancelled (a master key or store that ignores its context); their results are discarded", ErrClosed, closeWait))
	}
	k.mu.Lock()
	for ref, e := range k.keks {
		k.zero(e.kek)
		delete(k.keks, ref)
	}
	for _, g := range k.graves {
		k.zero(g.kek)
	}
	k.graves = nil
	k.scopes = map[envelope.Scope]*scopeEntry{}
	for c, e := range k.classKeys {
		e.zero()
		delete(k.classKeys, c)
	}
	k.mu.Unlock()
	return errors.Join(append(errs, k.closeMasterKeys())...)
}

// closeMasterKeys closes the master keys the keyring opened itself.
func (k *Keyring) closeMasterKeys() error {
	k.mkMu.Lock()
	defer k.mkMu.Unlock()
	var errs []error
	for uri, g := range k.mks {
		delete(k.mks, uri)
		g.uncount() // a closed keyring's breakers are no longer open ones
		if c, ok := g.mk.(io.Closer); ok && k.ownKeys {
			if err := c.Close(); err != nil {
				errs = append(errs, fmt.Errorf("keyring: close master key %s: %w", uri, err))
			}
		}
	}
	return errors.Join(errs...)
}
