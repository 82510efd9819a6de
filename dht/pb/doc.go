// Package pb holds ringkv's wire and storage messages, generated from the
// .proto files in this directory. Every peer protocol frames these messages
// with a length prefix and a maximum size (see dht/p2p); the store persists
// Record. Regenerate with `go generate ./dht/pb` (needs protoc and
// protoc-gen-go on PATH).
package pb

//go:generate sh -c "protoc --go_out=. --go_opt=paths=source_relative *.proto"
