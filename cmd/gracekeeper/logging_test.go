package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"k8s.io/klog/v2"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
)

// TestKlogLinesAreJSON: what client-go logs through klog (leader election,
// reflectors) comes out as the same JSON lines as gracekeeper's own.
func TestKlogLinesAreJSON(t *testing.T) {
	var buf bytes.Buffer
	newLogger(&buf, 0)
	t.Cleanup(func() { klog.ClearLogger() })
	klog.InfoS("attempting to acquire leader lease", "lease", "gracekeeper-system/gracekeeper-leader")
	klog.Errorf("failed to list %s: %v", "*v1.Pod", "connection refused")
	ctrllog.Log.Info("from controller-runtime")
	klog.Flush()

	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("want 3 lines, got %d:\n%s", len(lines), buf.String())
	}
	var got []map[string]any
	for _, l := range lines {
		m := map[string]any{}
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("not a JSON line: %q: %v", l, err)
		}
		got = append(got, m)
	}
	if got[0]["msg"] != "attempting to acquire leader lease" || got[0]["lease"] != "gracekeeper-system/gracekeeper-leader" || got[0]["logger"] != "client-go" {
		t.Errorf("klog InfoS line: %v", got[0])
	}
	_, isError := got[1]["error"] // funcr's Error lines carry the key
	if msg, _ := got[1]["msg"].(string); !strings.Contains(msg, "failed to list *v1.Pod: connection refused") || !isError {
		t.Errorf("klog Errorf line: %v", got[1])
	}
	if got[2]["msg"] != "from controller-runtime" {
		t.Errorf("controller-runtime line: %v", got[2])
	}
}
