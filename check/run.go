package check

import (
	"context"
	"fmt"
	"io"
)

// Exit codes of `gracekeeper check`, for CI pipelines.
const (
	ExitPass     = 0 // every object passes (warnings allowed)
	ExitDenied   = 1 // a policy denies an object
	ExitBadInput = 2 // unreadable or invalid input or policies; nothing printed on stdout
)

// RunOptions are the whole of one `gracekeeper check` invocation.
type RunOptions struct {
	Options
	// Files are the inputs; "-" is stdin.
	Files []string
	// PolicyPaths are policy files or directories of them.
	PolicyPaths []string
	Output      Format
	Stdin       io.Reader
	Stdout      io.Writer
	Stderr      io.Writer
}

// Run checks the files against the policies, prints the objects on Stdout
// and the findings on Stderr, and returns the exit code.
func Run(ctx context.Context, o RunOptions) int {
	if len(o.Files) == 0 {
		fmt.Fprintln(o.Stderr, "gracekeeper check: no input: give -f FILE (or -f - for stdin)")
		return ExitBadInput
	}
	if o.Output != "" && o.Output != FormatYAML && o.Output != FormatJSON {
		fmt.Fprintf(o.Stderr, "gracekeeper check: unknown output format %q: use yaml or json\n", o.Output)
		return ExitBadInput
	}
	c, err := New(ctx, o.Options, o.PolicyPaths)
	if err != nil {
		printErrors(o.Stderr, err)
		return ExitBadInput
	}
	res, err := c.Check(o.Files, o.Stdin)
	if err != nil {
		printErrors(o.Stderr, err)
		return ExitBadInput
	}
	if err := res.WriteObjects(o.Stdout, o.Output); err != nil {
		fmt.Fprintf(o.Stderr, "gracekeeper check: writing the objects: %v\n", err)
		return ExitBadInput
	}
	if c.Policies() == 0 {
		fmt.Fprintln(o.Stderr, "note: no policies given (-p): nothing is mutated or validated")
	}
	if len(res.Objects) == 0 {
		// An empty input passes, but in CI it usually means a wrong path.
		fmt.Fprintln(o.Stderr, "note: the input holds no objects")
	}
	if err := res.WriteFindings(o.Stderr, c.Policies()); err != nil {
		return ExitBadInput
	}
	if res.Denied() {
		return ExitDenied
	}
	return ExitPass
}

// printErrors prints each joined error on a line of its own.
func printErrors(w io.Writer, err error) {
	for _, e := range flatten(err) {
		fmt.Fprintf(w, "gracekeeper check: %v\n", e)
	}
}
