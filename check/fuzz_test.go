package check

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// FuzzCheck: whatever the input, check either reports *InputErrors (no
// panic, no hang) or produces output that a second pass leaves unchanged.
// `go test` runs the seeds; `go test -fuzz FuzzCheck ./check` explores.
func FuzzCheck(f *testing.F) {
	for name := range goldenCases {
		in, err := os.ReadFile(filepath.Join(goldenDir, name, "input.yaml"))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(in)
	}
	for _, s := range []string{
		"", "---\n---\n", "null", "[]", "- 1\n", "apiVersion: v1\nkind: List\nitems: 3\n",
		"apiVersion: v1\nkind: List\nitems: [null, 1, {kind: Pod}]\n",
		"apiVersion: v1\nkind: Pod\nmetadata: []\n",
		"apiVersion: v1\nkind: Pod\nspec: {containers: [{name: a}], initContainers: [{name: b, restartPolicy: Always}]}\n",
		"apiVersion: apps/v1\nkind: Deployment\nspec: {template: null}\n",
		"apiVersion: v1\nkind: ReplicationController\nspec: {}\n",
		"apiVersion: batch/v1\nkind: CronJob\nspec: {jobTemplate: {spec: {template: {metadata: null}}}}\n",
		"{\"apiVersion\": \"v1\", \"kind\": \"Pod\", \"metadata\": {\"annotations\": null}}",
	} {
		f.Add([]byte(s))
	}
	c, err := New(context.Background(), testOptions(Options{}), []string{filepath.Join(goldenDir, "all-kinds", "policies.yaml")})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		res, err := c.Check([]string{"-"}, bytes.NewReader(data))
		if err != nil {
			for _, e := range flatten(err) {
				var ie *InputError
				if !errors.As(e, &ie) {
					t.Fatalf("error is not an InputError: %v", e)
				}
			}
			return
		}
		var out bytes.Buffer
		if err := res.WriteObjects(&out, FormatYAML); err != nil {
			t.Fatal(err)
		}
		res2, err := c.Check([]string{"-"}, bytes.NewReader(out.Bytes()))
		if err != nil {
			t.Fatalf("output of a passing input fails as input: %v\n%s", err, out.Bytes())
		}
		var out2 bytes.Buffer
		if err := res2.WriteObjects(&out2, FormatYAML); err != nil {
			t.Fatal(err)
		}
		if res2.Changed() != 0 || !bytes.Equal(out.Bytes(), out2.Bytes()) {
			t.Fatalf("second pass changed %d objects:\n--- first\n%s\n--- second\n%s", res2.Changed(), out.Bytes(), out2.Bytes())
		}
	})
}
