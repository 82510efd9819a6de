package main
import (
	_ "github.com/libp2p/go-libp2p"
	_ "github.com/libp2p/go-libp2p/p2p/net/mock"
	_ "github.com/multiformats/go-multiaddr"
	_ "github.com/dgraph-io/badger/v4"
	_ "github.com/spf13/cobra"
	_ "github.com/knadh/koanf/v2"
	_ "github.com/knadh/koanf/parsers/toml/v2"
	_ "github.com/knadh/koanf/providers/file"
	_ "github.com/knadh/koanf/providers/env/v2"
	_ "github.com/knadh/koanf/providers/posflag"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "google.golang.org/protobuf/proto"
	_ "github.com/cespare/xxhash/v2"
	_ "github.com/mattn/go-isatty"
	_ "golang.org/x/time/rate"
)
import (
	_ "github.com/knadh/koanf/providers/confmap"
	_ "github.com/knadh/koanf/providers/structs"
	_ "github.com/olekukonko/tablewriter"
	_ "github.com/pelletier/go-toml/v2"
	_ "github.com/schollz/progressbar/v3"
	_ "github.com/prometheus/client_golang/prometheus/promhttp"
	_ "golang.org/x/sync/errgroup"
	_ "github.com/libp2p/go-libp2p/p2p/transport/tcp"
	_ "github.com/libp2p/go-libp2p/p2p/transport/quic"
)
func main() {}
