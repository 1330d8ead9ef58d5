// Package atomicfile replaces a file as a whole: a reader sees the old
// content or the new, never a mix. It is the repository's one
// write-temporary-file-then-rename: every file gallium-net replaces in
// place (the hook's host snapshot, commit-confirm state, keepalived's
// configuration, the hook's reload record, the hook's records) goes
// through Write or Replace.
package atomicfile

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// TempPattern is the glob of the temporary files Write and Replace create
// next to path; a writer killed between create and rename leaves one behind.
func TempPattern(path string) string {
	return filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
}

// Write replaces path with data, durably: it writes a temporary file in
// path's directory (created 0700 when missing), gives it mode, fsyncs it,
// renames it over path and fsyncs the directory, so that after a crash path
// holds the old or the new data.
func Write(path string, data []byte, mode os.FileMode) error {
	return WriteFunc(path, mode, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// WriteFunc is Write with the content written by write.
func WriteFunc(path string, mode os.FileMode, write func(io.Writer) error) error {
	return replace(path, mode, write, true)
}

// Replace replaces path with data by rename, without any fsync: for files
// on tmpfs that describe only the running system (the hook's records under
// /run), where an fsync would cost milliseconds and a crash empties the
// directory anyway. Readers still never see a partial file.
func Replace(path string, data []byte, mode os.FileMode) error {
	return replace(path, mode, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	}, false)
}

// replace is the one implementation: a single deferred cleanup closes and
// removes the temporary file on any failure (after the rename it is gone
// already); durable fsyncs the file before the rename and the directory
// after it.
func replace(path string, mode os.FileMode, write func(io.Writer) error, durable bool) (err error) {
	dir := filepath.Dir(path)
	if durable {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("write %s: %w", path, err)
		}
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	if err := write(tmp); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Chmod(mode); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if durable {
		if err := tmp.Sync(); err != nil {
			return fmt.Errorf("write %s: fsync: %w", path, err)
		}
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if !durable {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("write %s: open dir: %w", path, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("write %s: fsync dir: %w", path, err)
	}
	return nil
}
