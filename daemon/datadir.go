package daemon

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Files inside a data dir.
const (
	IdentityFile = "identity.key" // Ed25519 libp2p private key, protobuf-marshalled, mode 0600
	StoreDir     = "store"        // Badger files
	APIFile      = "api"          // the running daemon's API address
	LockFile     = "lock"         // flock'd by the running daemon; holds its pid
)

// Data dir errors.
var (
	// ErrIdentityExists: init found an identity and will not replace it.
	ErrIdentityExists = errors.New("daemon: identity exists")
	// ErrDataDirInUse: another daemon holds the data dir's lock.
	ErrDataDirInUse = errors.New("daemon: data dir in use")
	// ErrDataDir: the data dir cannot be created, read or written.
	ErrDataDir = errors.New("daemon: data dir unusable")
)

// InitResult reports what Init created.
type InitResult struct {
	DataDir string
	PeerID  peer.ID
	Created []string // files and directories created
}

// Init creates dir with a commented config.toml holding every default, a
// new Ed25519 identity and the store directory. It never overwrites an
// identity: if one exists it fails with ErrIdentityExists and changes
// nothing. An existing config.toml is kept.
func Init(dir string) (InitResult, error) {
	res := InitResult{DataDir: dir}
	idPath := filepath.Join(dir, IdentityFile)
	if _, err := os.Stat(idPath); err == nil {
		return res, fmt.Errorf("%w: %s already has an identity (%s); remove that file to create a new one, which changes the node's peer ID",
			ErrIdentityExists, dir, IdentityFile)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return res, dataDirErr(dir, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return res, dataDirErr(dir, err)
	}
	res.Created = append(res.Created, dir)
	cfgPath := filepath.Join(dir, ConfigFile)
	if _, err := os.Stat(cfgPath); errors.Is(err, fs.ErrNotExist) {
		if err := writeFileAtomic(cfgPath, []byte(ConfigTemplate()), 0o644); err != nil {
			return res, dataDirErr(dir, err)
		}
		res.Created = append(res.Created, cfgPath)
	}
	priv, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		return res, fmt.Errorf("daemon: generate identity: %w", err)
	}
	raw, err := crypto.MarshalPrivateKey(priv)
	if err != nil {
		return res, fmt.Errorf("daemon: marshal identity: %w", err)
	}
	if err := writeFileAtomic(idPath, raw, 0o600); err != nil {
		return res, dataDirErr(dir, err)
	}
	res.Created = append(res.Created, idPath)
	if res.PeerID, err = peer.IDFromPrivateKey(priv); err != nil {
		return res, fmt.Errorf("daemon: derive peer ID: %w", err)
	}
	storePath := filepath.Join(dir, StoreDir)
	if err := os.MkdirAll(storePath, 0o700); err != nil {
		return res, dataDirErr(dir, err)
	}
	res.Created = append(res.Created, storePath)
	return res, nil
}

// Initialized reports whether dir holds an identity.
func Initialized(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, IdentityFile))
	return err == nil
}

// LoadIdentity reads the data dir's private key.
func LoadIdentity(dir string) (crypto.PrivKey, error) {
	path := filepath.Join(dir, IdentityFile)
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, dataDirErr(dir, err)
	}
	k, err := crypto.UnmarshalPrivateKey(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %s does not hold a libp2p private key (%v); restore it from a backup or re-run `ringkv init` in an empty dir",
			ErrDataDir, path, err)
	}
	return k, nil
}

// PeerIDOf returns the peer ID of the data dir's identity.
func PeerIDOf(dir string) (peer.ID, error) {
	k, err := LoadIdentity(dir)
	if err != nil {
		return "", err
	}
	return peer.IDFromPrivateKey(k)
}

// dirLock is an exclusive flock on <data-dir>/lock, held while a daemon runs.
type dirLock struct {
	f *os.File
}

// lockDataDir takes the data dir's lock or explains who holds it.
func lockDataDir(dir string) (*dirLock, error) {
	path := filepath.Join(dir, LockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, dataDirErr(dir, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder := readHolder(dir)
		f.Close()
		return nil, fmt.Errorf("%w: %s is used by a running ringkv daemon%s; stop it first or choose another --data-dir",
			ErrDataDirInUse, dir, holder)
	}
	if err := f.Truncate(0); err == nil {
		fmt.Fprintf(f, "%d\n", os.Getpid())
		f.Sync()
	}
	return &dirLock{f: f}, nil
}

// readHolder describes the daemon holding the lock, from its lock and api files.
func readHolder(dir string) string {
	var parts []string
	if b, err := os.ReadFile(filepath.Join(dir, LockFile)); err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			parts = append(parts, "pid "+strconv.Itoa(pid))
		}
	}
	if b, err := os.ReadFile(filepath.Join(dir, APIFile)); err == nil {
		parts = append(parts, "api "+strings.TrimSpace(string(b)))
	}
	if len(parts) == 0 {
		return ""
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

func (l *dirLock) release() error {
	if l == nil || l.f == nil {
		return nil
	}
	syscall.Flock(int(l.f.Fd()), syscall.LOCK_UN)
	err := l.f.Close()
	l.f = nil
	return err
}

// writeFileAtomic writes via a temp file in the same directory and a rename.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

func dataDirErr(dir string, err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%w: %s: cannot %s %s: %v; check that the directory exists and this user may read and write it",
			ErrDataDir, dir, pe.Op, pe.Path, pe.Err)
	}
	return fmt.Errorf("%w: %s: %v", ErrDataDir, dir, err)
}
