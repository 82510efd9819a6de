package daemon

import "runtime/debug"

// Version is the ringkv release, set at build time with
// -ldflags "-X github.com/ringkv/ringkv/daemon.Version=v1.2.3".
var Version = "0.1.0-dev"

// BuildInfo describes the binary: version, Go version and VCS revision.
func BuildInfo() map[string]string {
	out := map[string]string{"version": Version}
	if bi, ok := debug.ReadBuildInfo(); ok {
		out["go"] = bi.GoVersion
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				out["revision"] = s.Value
			}
		}
	}
	return out
}
