package records

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"
)

// DefaultLockTimeout bounds the wait for a lock. libvirt runs hooks with no
// timeout, so a hook that waited forever would hang libvirtd's domain start.
const DefaultLockTimeout = 10 * time.Second

// ErrLockTimeout is returned when a lock was not free within the timeout.
var ErrLockTimeout = errors.New("timed out waiting for a hook records lock")

// lockedFile is an open file under an exclusive flock. flock (not a lock
// held by a daemon) is released by the kernel when a hook dies, so a crashed
// hook never leaves a lock taken.
type lockedFile struct {
	f    *os.File
	path string
}

// lockPath opens path (creating it) and takes an exclusive flock on it,
// waiting at most timeout. The holder of such a lock may remove its file
// (see removeAndUnlock) so that locks of stopped domains and released MACs
// do not pile up under /run; a waiter that then gets the lock of the removed
// inode notices that the path no longer names it and starts over on the
// file that replaced it.
func lockPath(path string, timeout time.Duration) (*lockedFile, error) {
	if timeout <= 0 {
		timeout = DefaultLockTimeout
	}
	deadline := time.Now().Add(timeout)
	for {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return nil, fmt.Errorf("hook records lock %s: %w", path, err)
		}
		if err := flockUntil(f, deadline); err != nil {
			// flockUntil owns f from here (a timed-out wait closes it later).
			if errors.Is(err, ErrLockTimeout) {
				return nil, fmt.Errorf("%w %s after %s; another gallium-net hook holds it (see 'fuser %s')", ErrLockTimeout, path, timeout, path)
			}
			return nil, fmt.Errorf("hook records lock %s: %w", path, err)
		}
		var held, now syscall.Stat_t
		if syscall.Fstat(int(f.Fd()), &held) == nil && syscall.Stat(path, &now) == nil && held.Ino == now.Ino && held.Dev == now.Dev {
			return &lockedFile{f: f, path: path}, nil
		}
		f.Close() // the holder removed the file while we waited: start over
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%w %s after %s (its file kept being replaced)", ErrLockTimeout, path, timeout)
		}
	}
}

// unlock releases the lock and closes the file.
func (l *lockedFile) unlock() {
	_ = syscall.Flock(int(l.f.Fd()), syscall.LOCK_UN)
	l.f.Close()
}

// removeAndUnlock removes the lock's file, then releases the lock: removing
// it while holding it is what lets waiters on the old inode tell.
func (l *lockedFile) removeAndUnlock() {
	_ = os.Remove(l.path)
	l.unlock()
}

// flockUntil takes an exclusive flock on f, waiting until deadline. The wait
// is a blocking flock (the kernel queues the waiters) rather than polling,
// which starved some of 50 hooks started at once. On ErrLockTimeout or any
// other error f belongs to flockUntil, which closes it.
func flockUntil(f *os.File, deadline time.Time) error {
	// Uncontended (the usual case for one domain or one MAC): no goroutine,
	// no timer.
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err == nil {
		return nil
	}
	done := make(chan error, 1)
	go func() {
		for {
			err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
			if !errors.Is(err, syscall.EINTR) {
				done <- err
				return
			}
		}
	}()
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	select {
	case err := <-done:
		if err != nil {
			f.Close()
		}
		return err
	case <-timer.C:
		// The blocked flock cannot be cancelled; whoever gets the lock late
		// gives it straight back.
		go func() {
			if err := <-done; err == nil {
				_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
			}
			f.Close()
		}()
		return ErrLockTimeout
	}
}
