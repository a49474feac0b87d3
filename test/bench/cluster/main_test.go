package main

import (
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gracekeeper/gracekeeper/test/controlplane"
)

// TestShortRun runs the whole benchmark tiny, as `make test` can afford:
// it asserts only that every arm ran and was correct (the floor makes
// gracekeeper's exact change, Deny refuses in both, a pod no policy selects
// costs no webhook call, the held pods carry the finalizer) and that the
// tables are printed; it asserts no timing.
func TestShortRun(t *testing.T) {
	controlplane.SkipIfShort(t)
	if err := controlplane.CheckAssets(); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "gracekeeper")
	build := exec.Command("go", "build", "-o", bin, "./cmd/gracekeeper")
	build.Dir = controlplane.RepoRoot()
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/gracekeeper: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var out, errOut bytes.Buffer
	code := run(ctx, []string{"-gracekeeper", bin, "-n", "4", "-rounds", "1", "-held", "6", "-modes", "webhook,apiserver"}, &out, &errOut)
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out.String(), errOut.String())
	}
	for _, want := range []string{"| none |", "| floor |", "| selected/webhook |", "| unselected/webhook |", "apiserver", "6 pods held", "| RSS (VmRSS) |"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

func TestFlagsRefused(t *testing.T) {
	for _, args := range [][]string{{"-n", "0"}, {"-c", "1000"}, {"-held", "-1"}, {"-modes", ""}, {"-rounds", "100"}} {
		var out, errOut bytes.Buffer
		if code := run(context.Background(), args, &out, &errOut); code != 2 || errOut.Len() == 0 {
			t.Errorf("%v: exit %d (%q), want 2 with a message", args, code, errOut.String())
		}
	}
}
