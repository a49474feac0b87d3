// Package cli is the main function the test commands (bench, demo) share.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// Main runs run with the process's arguments and output, its context
// cancelled on SIGINT or SIGTERM so the command can clean up, and exits
// with the code run returns.
func Main(run func(ctx context.Context, args []string, stdout, stderr io.Writer) int) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// FlagsParsed turns the error of parsing command's flags into whether to
// stop and with which exit code: 0 after -h (the flag package printed the
// usage), 2 after a bad flag, which it prints.
func FlagsParsed(command string, err error, stderr io.Writer) (code int, stop bool) {
	switch {
	case err == nil:
		return 0, false
	case errors.Is(err, flag.ErrHelp):
		return 0, true
	default:
		fmt.Fprintf(stderr, "%s: %v\n", command, err)
		return 2, true
	}
}
