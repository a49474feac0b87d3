package main

import (
	"context"
	"fmt"
	"io"
)

// runCheck is wired by the work on this subcommand.
func runCheck(_ context.Context, _ []string, _ io.Reader, _, stderr io.Writer) int {
	fmt.Fprintln(stderr, "not implemented yet")
	return 2
}
