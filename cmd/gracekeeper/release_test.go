package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestReleaseFinalizersFlags: bad input is refused with exit 2 and a clear
// message, before any cluster is contacted. The work itself is tested
// against a real API server in package finalizer (TestReleaseAll).
func TestReleaseFinalizersFlags(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope")
	bad := filepath.Join(t.TempDir(), "bad")
	if err := os.WriteFile(bad, []byte("{not yaml: ["), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := map[string]struct {
		args     []string
		wantCode int
		wantErr  string
	}{
		"unknown flag":       {args: []string{"--force"}, wantCode: 2, wantErr: "flag provided but not defined"},
		"extra argument":     {args: []string{"pods"}, wantCode: 2, wantErr: `unexpected argument "pods"`},
		"missing kubeconfig": {args: []string{"--kubeconfig", missing}, wantCode: 2, wantErr: "nope"},
		"broken kubeconfig":  {args: []string{"--kubeconfig", bad, "--dry-run"}, wantCode: 2, wantErr: "release-finalizers"},
		"help":               {args: []string{"-h"}, wantCode: 0, wantErr: "usage: gracekeeper release-finalizers"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), append([]string{"release-finalizers"}, tc.args...), nil, &stdout, &stderr)
			if code != tc.wantCode || !strings.Contains(stderr.String(), tc.wantErr) {
				t.Errorf("exit %d, stderr %q; want exit %d and %q", code, stderr.String(), tc.wantCode, tc.wantErr)
			}
		})
	}
}
