// Command hull builds sealed single-program VM images and runs them.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/hullvm/hull/internal/cli"
)

func main() {
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	os.Exit(cli.Main(context.Background(), os.Args[1:], cli.Env{Stdout: os.Stdout, Stderr: os.Stderr, Signals: sigs}))
}
