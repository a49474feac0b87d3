package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBadFlags: a missing binary or a bad flag is a clear error, exit 2,
// before anything is started.
func TestBadFlags(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope")
	for name, tc := range map[string]struct {
		args    []string
		wantErr string
	}{
		"missing gracekeeper binary": {args: []string{"--gracekeeper", missing}, wantErr: missing + ": stat"},
		"missing policy file":        {args: []string{"--policy", missing}, wantErr: missing + ": stat"},
		"missing assets":             {args: []string{"--assets", missing}, wantErr: filepath.Join(missing, "kube-apiserver")},
		"unknown flag":               {args: []string{"--frobnicate"}, wantErr: "flag provided but not defined: -frobnicate"},
		"unknown admission mode":     {args: []string{"--admission-mode", "both"}, wantErr: `--admission-mode "both": must be webhook or apiserver`},
	} {
		t.Run(name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			// Every other input exists (this test binary stands in for
			// gracekeeper), so the error is about the one that does not.
			args := append([]string{"--gracekeeper", os.Args[0], "--assets", filepath.Dir(os.Args[0]), "--policy", os.Args[0]}, tc.args...)
			if code := run(context.Background(), args, &stdout, &stderr); code != 2 {
				t.Errorf("exit %d, want 2", code)
			}
			if !strings.Contains(stderr.String(), tc.wantErr) {
				t.Errorf("stderr %q does not contain %q", stderr.String(), tc.wantErr)
			}
			if stdout.Len() != 0 {
				t.Errorf("started something: %s", stdout.String())
			}
		})
	}
}
