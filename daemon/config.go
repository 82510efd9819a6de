package daemon

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/knadh/koanf/providers/confmap"
	"github.com/knadh/koanf/providers/env/v2"
	"github.com/knadh/koanf/providers/posflag"
	"github.com/knadh/koanf/v2"
	"github.com/multiformats/go-multiaddr"
	"github.com/pelletier/go-toml/v2"
	"github.com/spf13/pflag"

	"github.com/ringkv/ringkv/bootstrap"
	"github.com/ringkv/ringkv/dht/replica"
)

// EnvPrefix prefixes every environment variable the daemon reads:
// RINGKV_<NAME> sets the config key <name> (RINGKV_WRITE_QUORUM=3).
const EnvPrefix = "RINGKV_"

// ConfigFile is the name of the config file inside the data dir.
const ConfigFile = "config.toml"

// ErrConfig marks a configuration error: a bad flag, environment variable
// or config file value. The CLI exits with the usage code on it.
var ErrConfig = errors.New("config")

// Config is everything a daemon needs to start. Load fills it from, in order
// of precedence, flags, RINGKV_* environment variables, the data dir's
// config.toml, and DefaultConfig.
type Config struct {
	// DataDir holds config.toml, the identity key, the store and the api
	// file. Default ~/.ringkv; set by --data-dir or RINGKV_DATA_DIR only.
	DataDir string `koanf:"-"`
	// Listen is the libp2p listen multiaddrs. Port 0 picks a free port.
	Listen []string `koanf:"listen"`
	// API is the local HTTP API address (host:port). Keep it on loopback:
	// the API has no authentication. Port 0 picks a free port; the actual
	// address is written to <data-dir>/api.
	API string `koanf:"api"`
	// Bootstrap lists peers to join through, each a multiaddr ending in
	// /p2p/<peer ID>. Empty: start a new cluster.
	Bootstrap []string `koanf:"bootstrap"`
	// Zone is this node's failure domain (rack, availability zone).
	// Replicas of a key go to distinct zones first.
	Zone string `koanf:"zone"`
	// Capacity weights this node's share of the ring (1 = standard).
	Capacity float64 `koanf:"capacity"`
	// Sync fsyncs every write before acknowledging it. Off is faster but a
	// machine crash can lose the last writes of this replica.
	Sync bool `koanf:"sync"`
	// Replicas (N), WriteQuorum (W) and ReadQuorum (R) are the cluster
	// defaults for replication; requests may override W and R.
	Replicas    int `koanf:"replicas"`
	WriteQuorum int `koanf:"write_quorum"`
	ReadQuorum  int `koanf:"read_quorum"`
	// Conflicts is "siblings" (concurrent writes are all kept) or "lww"
	// (the latest timestamp wins, concurrent writes may be lost).
	Conflicts string `koanf:"conflicts"`
	// MaxKeySize and MaxValueSize bound requests, in bytes.
	MaxKeySize   int `koanf:"max_key_size"`
	MaxValueSize int `koanf:"max_value_size"`
	// Timing selects membership timings: "lan" for real networks, "local"
	// for clusters on one machine (faster failure detection).
	Timing string `koanf:"timing"`
	// ShutdownTimeout bounds how long in-flight requests may run after a
	// stop signal.
	ShutdownTimeout time.Duration `koanf:"shutdown_timeout"`
	// LogLevel is debug, info, warn or error; LogFormat is text or json.
	LogLevel  string `koanf:"log_level"`
	LogFormat string `koanf:"log_format"`
}

// setting describes one config key once: its flag, default and help. The
// flags, the environment names and the commented config.toml all come from
// this table.
type setting struct {
	key   string // config.toml key; the flag is key with '-' for '_'
	usage string
	def   func(c *Config) any
}

var settings = []setting{
	{"listen", "libp2p listen multiaddr (repeatable); port 0 picks a free port", func(c *Config) any { return c.Listen }},
	{"api", "local HTTP API address host:port; port 0 picks a free port", func(c *Config) any { return c.API }},
	{"bootstrap", "peer to join through, a multiaddr ending in /p2p/<peer ID> (repeatable)", func(c *Config) any { return c.Bootstrap }},
	{"zone", "failure domain of this node (rack); replicas go to distinct zones first", func(c *Config) any { return c.Zone }},
	{"capacity", "weight of this node's share of the ring (1 = standard node)", func(c *Config) any { return c.Capacity }},
	{"sync", "fsync each write (to the store's commit log) before acknowledging it", func(c *Config) any { return c.Sync }},
	{"replicas", "copies of each key (N)", func(c *Config) any { return c.Replicas }},
	{"write_quorum", "replica acknowledgements a write waits for (W)", func(c *Config) any { return c.WriteQuorum }},
	{"read_quorum", "replica answers a read waits for (R)", func(c *Config) any { return c.ReadQuorum }},
	{"conflicts", "concurrent writes: siblings (keep all) or lww (latest timestamp wins)", func(c *Config) any { return c.Conflicts }},
	{"max_key_size", "largest accepted key, bytes", func(c *Config) any { return c.MaxKeySize }},
	{"max_value_size", "largest accepted value, bytes", func(c *Config) any { return c.MaxValueSize }},
	{"timing", "membership timings: lan, or local for clusters on one machine", func(c *Config) any { return c.Timing }},
	{"shutdown_timeout", "time in-flight requests get to finish after a stop signal", func(c *Config) any { return c.ShutdownTimeout }},
	{"log_level", "debug, info, warn or error", func(c *Config) any { return c.LogLevel }},
	{"log_format", "text or json", func(c *Config) any { return c.LogFormat }},
}

// DefaultConfig returns a config with every field set to its default.
func DefaultConfig() Config {
	return Config{
		DataDir:         DefaultDataDir(),
		Listen:          []string{"/ip4/0.0.0.0/tcp/7600", "/ip4/0.0.0.0/udp/7600/quic-v1"},
		API:             "127.0.0.1:7601",
		Bootstrap:       []string{},
		Capacity:        1,
		Sync:            true,
		Replicas:        3,
		WriteQuorum:     2,
		ReadQuorum:      2,
		Conflicts:       "siblings",
		MaxKeySize:      1024,
		MaxValueSize:    1 << 20,
		Timing:          "lan",
		ShutdownTimeout: 10 * time.Second,
		LogLevel:        "info",
		LogFormat:       "text",
	}
}

// DefaultDataDir is $RINGKV_DATA_DIR, else ~/.ringkv.
func DefaultDataDir() string {
	if d := os.Getenv(EnvPrefix + "DATA_DIR"); d != "" {
		return d
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return ".ringkv"
	}
	return filepath.Join(home, ".ringkv")
}

// Validate checks every field and the relations between them. Its errors
// wrap ErrConfig and name the offending key.
func (c Config) Validate() error {
	bad := func(key, format string, args ...any) error {
		return fmt.Errorf("%w: %s: %s", ErrConfig, key, fmt.Sprintf(format, args...))
	}
	if len(c.Listen) == 0 {
		return bad("listen", "at least one listen address is required")
	}
	for _, a := range c.Listen {
		if _, err := multiaddr.NewMultiaddr(a); err != nil {
			return bad("listen", "%q is not a multiaddr (%v); use e.g. /ip4/0.0.0.0/tcp/7600", a, err)
		}
	}
	if _, _, err := net.SplitHostPort(c.API); err != nil {
		return bad("api", "%q is not host:port; use e.g. 127.0.0.1:7601", c.API)
	}
	if _, err := bootstrap.ParseList(c.Bootstrap); err != nil {
		return bad("bootstrap", "%v", err)
	}
	if len(c.Zone) > 64 {
		return bad("zone", "longer than 64 bytes")
	}
	if c.Capacity <= 0 || c.Capacity > 64 {
		return bad("capacity", "%v is out of range; use a weight in (0, 64]", c.Capacity)
	}
	if c.Replicas < 1 || c.Replicas > 16 {
		return bad("replicas", "%d is out of range; use 1 to 16", c.Replicas)
	}
	if c.WriteQuorum < 1 || c.WriteQuorum > c.Replicas {
		return bad("write_quorum", "%d must be between 1 and replicas (%d)", c.WriteQuorum, c.Replicas)
	}
	if c.ReadQuorum < 1 || c.ReadQuorum > c.Replicas {
		return bad("read_quorum", "%d must be between 1 and replicas (%d)", c.ReadQuorum, c.Replicas)
	}
	if c.Conflicts != "siblings" && c.Conflicts != "lww" {
		return bad("conflicts", "%q is not siblings or lww", c.Conflicts)
	}
	if c.MaxKeySize < 1 || c.MaxKeySize > replica.MaxKeyLimit {
		return bad("max_key_size", "%d is out of range; use 1 to %d", c.MaxKeySize, replica.MaxKeyLimit)
	}
	if c.MaxValueSize < 1 || c.MaxValueSize > 16<<20 {
		return bad("max_value_size", "%d is out of range; use 1 to 16777216", c.MaxValueSize)
	}
	if c.Timing != "lan" && c.Timing != "local" {
		return bad("timing", "%q is not lan or local", c.Timing)
	}
	if c.ShutdownTimeout <= 0 {
		return bad("shutdown_timeout", "must be positive, e.g. 10s")
	}
	if _, err := parseLevel(c.LogLevel); err != nil {
		return bad("log_level", "%v", err)
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		return bad("log_format", "%q is not text or json", c.LogFormat)
	}
	return nil
}

// QuorumWarning returns a warning when W + R <= N: reads may then miss
// acknowledged writes.
func (c Config) QuorumWarning() string {
	if c.WriteQuorum+c.ReadQuorum > c.Replicas {
		return ""
	}
	return fmt.Sprintf("write_quorum (%d) + read_quorum (%d) <= replicas (%d): reads may miss acknowledged writes",
		c.WriteQuorum, c.ReadQuorum, c.Replicas)
}

// RegisterFlags adds one flag per setting to fs, plus --data-dir. With
// keys, only those settings get flags. Defaults shown in help are
// DefaultConfig's.
func RegisterFlags(fs *pflag.FlagSet, keys ...string) {
	d := DefaultConfig()
	fs.String("data-dir", d.DataDir, "data directory (env RINGKV_DATA_DIR)")
	for _, s := range settings {
		if len(keys) > 0 && !slices.Contains(keys, s.key) {
			continue
		}
		name := flagName(s.key)
		switch v := s.def(&d).(type) {
		case []string:
			fs.StringArray(name, v, s.usage)
		case string:
			fs.String(name, v, s.usage)
		case bool:
			fs.Bool(name, v, s.usage)
		case int:
			fs.Int(name, v, s.usage)
		case float64:
			fs.Float64(name, v, s.usage)
		case time.Duration:
			fs.Duration(name, v, s.usage)
		default:
			panic(fmt.Sprintf("daemon: setting %s has unsupported type %T", s.key, v))
		}
	}
}

func flagName(key string) string { return strings.ReplaceAll(key, "_", "-") }

// Load builds the config from fs (flags registered by RegisterFlags and
// parsed), the environment (environ, os.Environ when nil) and the data
// dir's config.toml. Errors wrap ErrConfig and name the key, variable or
// file line at fault.
func Load(fs *pflag.FlagSet, environ func() []string) (Config, error) {
	if environ == nil {
		environ = os.Environ
	}
	cfg := DefaultConfig()
	if dd, _ := fs.GetString("data-dir"); fs.Lookup("data-dir") != nil && fs.Changed("data-dir") {
		cfg.DataDir = dd
	} else if v, ok := lookupEnv(environ, EnvPrefix+"DATA_DIR"); ok && v != "" {
		cfg.DataDir = v
	}
	k := koanf.New(".")
	defaults := map[string]any{}
	for _, s := range settings {
		defaults[s.key] = s.def(&cfg)
	}
	if err := k.Load(confmap.Provider(defaults, "."), nil); err != nil {
		return cfg, fmt.Errorf("%w: defaults: %v", ErrConfig, err)
	}
	fileValues, err := readConfigFile(filepath.Join(cfg.DataDir, ConfigFile))
	if err != nil {
		return cfg, err
	}
	if err := k.Load(confmap.Provider(fileValues, "."), nil); err != nil {
		return cfg, fmt.Errorf("%w: %s: %v", ErrConfig, ConfigFile, err)
	}
	if err := k.Load(env.Provider(".", env.Opt{
		Prefix:        EnvPrefix,
		EnvironFunc:   environ,
		TransformFunc: envTransform,
	}), nil); err != nil {
		return cfg, fmt.Errorf("%w: environment: %v", ErrConfig, err)
	}
	if err := k.Load(posflag.ProviderWithFlag(fs, ".", nil, flagValue(fs)), nil); err != nil {
		return cfg, fmt.Errorf("%w: flags: %v", ErrConfig, err)
	}
	for _, s := range settings {
		if err := k.Unmarshal(s.key, fieldPtr(&cfg, s.key)); err != nil {
			return cfg, fmt.Errorf("%w: %s: %v", ErrConfig, s.key, unwrapDecode(err))
		}
	}
	return cfg, cfg.Validate()
}

// flagValue maps a changed flag to its config key and value; unchanged
// flags and --data-dir are skipped so they do not override lower layers.
func flagValue(fs *pflag.FlagSet) func(f *pflag.Flag) (string, any) {
	known := map[string]bool{}
	for _, s := range settings {
		known[flagName(s.key)] = true
	}
	return func(f *pflag.Flag) (string, any) {
		if !f.Changed || !known[f.Name] {
			return "", nil
		}
		return strings.ReplaceAll(f.Name, "-", "_"), posflag.FlagVal(fs, f)
	}
}

// envTransform maps RINGKV_WRITE_QUORUM=3 to write_quorum=3. Lists are
// comma-separated. Unknown names and RINGKV_DATA_DIR/RINGKV_API used by the
// CLI are handled: RINGKV_API is the same address for daemon and CLI.
func envTransform(k, v string) (string, any) {
	key := strings.ToLower(strings.TrimPrefix(k, EnvPrefix))
	for _, s := range settings {
		if s.key != key {
			continue
		}
		var d Config
		if _, isList := s.def(&d).([]string); isList {
			var out []string
			for _, p := range strings.Split(v, ",") {
				if p = strings.TrimSpace(p); p != "" {
					out = append(out, p)
				}
			}
			return key, out
		}
		return key, v
	}
	return "", nil
}

func lookupEnv(environ func() []string, name string) (string, bool) {
	for _, kv := range environ() {
		if k, v, ok := strings.Cut(kv, "="); ok && k == name {
			return v, true
		}
	}
	return "", false
}

// readConfigFile parses config.toml into a flat map, refusing unknown keys
// and reporting syntax errors with their line. A missing file is empty.
func readConfigFile(path string) (map[string]any, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return map[string]any{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w: cannot read %s: %v", ErrConfig, path, err)
	}
	var m map[string]any
	if err := toml.Unmarshal(b, &m); err != nil {
		var de *toml.DecodeError
		if errors.As(err, &de) {
			line, col := de.Position()
			return nil, fmt.Errorf("%w: %s line %d, column %d: %s; fix the file or delete it to use defaults",
				ErrConfig, path, line, col, de.Error())
		}
		return nil, fmt.Errorf("%w: %s: %v", ErrConfig, path, err)
	}
	for key := range m {
		if fieldPtr(&Config{}, key) == nil {
			return nil, fmt.Errorf("%w: %s: unknown key %q; see the comments in the file for valid keys", ErrConfig, path, key)
		}
	}
	return m, nil
}

// fieldPtr returns a pointer to the Config field for key, or nil.
func fieldPtr(c *Config, key string) any {
	switch key {
	case "listen":
		return &c.Listen
	case "api":
		return &c.API
	case "bootstrap":
		return &c.Bootstrap
	case "zone":
		return &c.Zone
	case "capacity":
		return &c.Capacity
	case "sync":
		return &c.Sync
	case "replicas":
		return &c.Replicas
	case "write_quorum":
		return &c.WriteQuorum
	case "read_quorum":
		return &c.ReadQuorum
	case "conflicts":
		return &c.Conflicts
	case "max_key_size":
		return &c.MaxKeySize
	case "max_value_size":
		return &c.MaxValueSize
	case "timing":
		return &c.Timing
	case "shutdown_timeout":
		return &c.ShutdownTimeout
	case "log_level":
		return &c.LogLevel
	case "log_format":
		return &c.LogFormat
	}
	return nil
}

// unwrapDecode shortens mapstructure's errors to their last, useful part.
func unwrapDecode(err error) string {
	s := err.Error()
	if i := strings.LastIndex(s, "error(s) decoding:"); i >= 0 {
		s = strings.TrimSpace(s[i+len("error(s) decoding:"):])
	}
	s = strings.TrimPrefix(s, "* ")
	return strings.ReplaceAll(s, "\n", "; ")
}

// ConfigTemplate renders a commented config.toml holding every default.
func ConfigTemplate() string {
	d := DefaultConfig()
	var b strings.Builder
	b.WriteString("# ringkv daemon configuration.\n")
	b.WriteString("# Precedence: command-line flags > RINGKV_<KEY> environment variables > this file > defaults.\n")
	b.WriteString("# Every key below is shown with its default value.\n")
	for _, s := range settings {
		fmt.Fprintf(&b, "\n# %s\n", s.usage)
		fmt.Fprintf(&b, "%s = %s\n", s.key, tomlValue(s.def(&d)))
	}
	return b.String()
}

func tomlValue(v any) string {
	switch x := v.(type) {
	case string:
		return strconv.Quote(x)
	case []string:
		q := make([]string, len(x))
		for i, s := range x {
			q[i] = strconv.Quote(s)
		}
		return "[" + strings.Join(q, ", ") + "]"
	case time.Duration:
		return strconv.Quote(x.String())
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	default:
		return fmt.Sprint(x)
	}
}
