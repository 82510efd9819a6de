// Command ringkv is the ringkv daemon and the CLI that talks to it.
package main

import (
	"context"
	"os"

	"github.com/ringkv/ringkv/cli"
)

func main() {
	os.Exit(cli.Execute(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
