package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var updateDocs = flag.Bool("update", false, "rewrite the command output pasted in docs/check.md and README.md")

// TestDocsCheckSessions runs every `$ gracekeeper ...` line of the console
// blocks in docs/check.md and README.md through the real command line, from
// the repository root, and compares the output pasted below it; `$ echo $?`
// lines check the exit code. With -update the pasted output is rewritten. So
// the tours can never drift from what the binary prints.
func TestDocsCheckSessions(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	for doc, minSessions := range map[string]int{"docs/check.md": 3, "README.md": 1} {
		t.Run(doc, func(t *testing.T) { checkSessions(t, root, doc, minSessions) })
	}
}

func checkSessions(t *testing.T, root, name string, minSessions int) {
	path := filepath.Join(root, name)
	doc, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Chdir(root)
	lines := strings.SplitAfter(string(doc), "\n")
	var (
		out      strings.Builder // the document, rewritten
		inBlock  bool
		lastExit = -1
		sessions int
	)
	for i := 0; i < len(lines); {
		line := lines[i]
		trimmed := strings.TrimRight(line, "\n")
		switch {
		case !inBlock:
			inBlock = trimmed == "```console"
			out.WriteString(line)
			i++
			continue
		case trimmed == "```":
			inBlock = false
			out.WriteString(line)
			i++
			continue
		case !strings.HasPrefix(trimmed, "$ "):
			t.Fatalf("%s line %d: output without a command: %q", name, i+1, trimmed)
		}
		// A command and the output pasted under it, up to the next command
		// or the end of the block.
		cmd := strings.TrimPrefix(trimmed, "$ ")
		j := i + 1
		for j < len(lines) && !strings.HasPrefix(lines[j], "$ ") && strings.TrimRight(lines[j], "\n") != "```" {
			j++
		}
		pasted := strings.Join(lines[i+1:j], "")
		var got string
		if cmd == "echo $?" {
			if lastExit < 0 {
				t.Fatalf("%s line %d: echo $? before any command", name, i+1)
			}
			got = fmt.Sprintf("%d\n", lastExit)
		} else {
			got, lastExit = runSession(t, cmd)
			sessions++
		}
		if got != pasted && !*updateDocs {
			t.Errorf("%s line %d: `%s` prints something else now (go test ./cmd/gracekeeper -run TestDocsCheckSessions -update):\n--- pasted\n%s--- got\n%s", name, i+1, cmd, pasted, got)
		}
		out.WriteString(line)
		out.WriteString(got)
		i = j
	}
	if sessions < minSessions {
		t.Errorf("%s has %d gracekeeper sessions; the tour needs its examples", name, sessions)
	}
	if *updateDocs {
		if err := os.WriteFile(path, []byte(out.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// runSession runs `gracekeeper ARGS [>/dev/null] [2>/dev/null]`, or two of
// them joined by one pipe, and returns what a terminal would show and the
// exit code of the last.
func runSession(t *testing.T, cmd string) (string, int) {
	t.Helper()
	var shown bytes.Buffer
	var stdin []byte
	code := 0
	stages := strings.Split(cmd, " | ")
	for n, stage := range stages {
		fields := strings.Fields(stage)
		if len(fields) == 0 || fields[0] != "gracekeeper" {
			t.Fatalf("cannot run %q: only gracekeeper commands", stage)
		}
		var args []string
		hideOut, hideErr := false, false
		for _, f := range fields[1:] {
			switch f {
			case ">/dev/null":
				hideOut = true
			case "2>/dev/null":
				hideErr = true
			default:
				args = append(args, f)
			}
		}
		var stdout, stderr bytes.Buffer
		code = run(context.Background(), args, bytes.NewReader(stdin), &stdout, &stderr)
		last := n == len(stages)-1
		if last && !hideOut {
			shown.Write(stdout.Bytes())
		}
		if !hideErr {
			shown.Write(stderr.Bytes())
		}
		stdin = stdout.Bytes()
	}
	return shown.String(), code
}
