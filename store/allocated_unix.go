//go:build unix

package store

import (
	"io/fs"
	"syscall"
)

// allocated is the disk space a file uses: its allocated 512-byte blocks.
// Badger preallocates its write-ahead and value-log files as sparse files
// twice their final size, so the apparent size would overstate usage.
func allocated(info fs.FileInfo) int64 {
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		return int64(st.Blocks) * 512
	}
	return info.Size()
}
