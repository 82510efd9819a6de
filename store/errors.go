package store

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/dgraph-io/badger/v4"

	"github.com/ringkv/ringkv/dht"
)

// Errors returned by the store. Callers test for them with errors.Is. Badger's
// own errors never leave the package: they are mapped to these, or to
// dht.ErrNotFound, dht.ErrCorruptRecord and dht.ErrRecordTooLarge, or
// flattened into a message.
var (
	// ErrClosed: the store was used after Close. Errors that carry it also
	// match dht.ErrClosed, for callers that only know the dht contract.
	ErrClosed = errors.New("store: closed")
	// ErrLocked: another process (or another Open in this one) holds the
	// data directory.
	ErrLocked = errors.New("store: data directory is in use by another process")
	// ErrUnreadable: the data directory cannot be created, read or written by
	// this user. The error names the directory and wraps the OS error.
	ErrUnreadable = errors.New("store: data directory is not readable and writable")
	// ErrInvalidConfig: Config.Validate rejected the configuration.
	ErrInvalidConfig = errors.New("store: invalid config")
	// ErrInvalidKey: the key is longer than MaxKeySize.
	ErrInvalidKey = errors.New("store: invalid key")
	// ErrBatchTooLarge: a PutBatch does not fit in one commit; split it (see
	// MaxBatchBytes).
	ErrBatchTooLarge = errors.New("store: batch too large")
)

// errUseAfterClose is what every method returns after Close.
var errUseAfterClose error = &multiError{
	msg:  ErrClosed.Error(),
	errs: []error{ErrClosed, dht.ErrClosed},
}

// multiError has its own message and matches several sentinels.
type multiError struct {
	msg  string
	errs []error
}

func (e *multiError) Error() string   { return e.msg }
func (e *multiError) Unwrap() []error { return e.errs }

// dirError is an Open failure about the data directory. Its message is
// written for an operator: what is wrong with which directory and what to do.
type dirError struct {
	kind  error // ErrLocked or ErrUnreadable
	dir   string
	cause error // OS error; nil for ErrLocked
}

func (e *dirError) Error() string {
	if e.kind == ErrLocked {
		return fmt.Sprintf("store: data directory %s is in use by another process; "+
			"stop it or choose another --data-dir", e.dir)
	}
	return fmt.Sprintf("store: data directory %s is not readable and writable by this user "+
		"(fix its permissions or choose another --data-dir): %v", e.dir, e.cause)
}

func (e *dirError) Unwrap() []error {
	if e.cause == nil {
		return []error{e.kind}
	}
	return []error{e.kind, e.cause}
}

// checkDir creates dir if needed and proves this process can list it and
// create files in it, so that permission problems surface as ErrUnreadable
// before Badger turns them into unwrappable strings.
func checkDir(dir string) error {
	unreadable := func(err error) error { return &dirError{kind: ErrUnreadable, dir: dir, cause: err} }
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return unreadable(err)
	}
	if _, err := os.ReadDir(dir); err != nil {
		return unreadable(err)
	}
	f, err := os.CreateTemp(dir, ".probe-*")
	if err != nil {
		return unreadable(err)
	}
	name := f.Name()
	closeErr := f.Close()
	if err := errors.Join(closeErr, os.Remove(name)); err != nil {
		return unreadable(err)
	}
	return nil
}

// openError maps a failed badger.Open to the package's errors. Badger
// flattens the OS error into its message (y.Wrapf outside debug mode), so
// the lock case is confirmed by probing the lock ourselves rather than by
// parsing text.
func openError(dir string, err error) error {
	if dirLocked(dir) {
		return &dirError{kind: ErrLocked, dir: dir}
	}
	if strings.Contains(err.Error(), "permission denied") {
		return &dirError{kind: ErrUnreadable, dir: dir, cause: fs.ErrPermission}
	}
	return fmt.Errorf("store: open %s: %v", dir, err)
}

// opError maps an error from a Badger call made by operation op.
func opError(op string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, badger.ErrKeyNotFound):
		return dht.ErrNotFound
	case errors.Is(err, badger.ErrDBClosed), errors.Is(err, badger.ErrBlockedWrites):
		return errUseAfterClose
	case errors.Is(err, badger.ErrTxnTooBig):
		return fmt.Errorf("store: %s: %w", op, ErrBatchTooLarge)
	}
	return fmt.Errorf("store: %s: %v", op, err)
}

// absDir returns dir made absolute for messages, or dir if that fails.
func absDir(dir string) string {
	if abs, err := filepath.Abs(dir); err == nil {
		return abs
	}
	return dir
}
