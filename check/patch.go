package check

import (
	"encoding/json"
	"fmt"
	"strings"

	jsonpatchapply "github.com/evanphx/json-patch/v5"
	"gomodules.xyz/jsonpatch/v2"
	corev1 "k8s.io/api/core/v1"

	"github.com/gracekeeper/gracekeeper/podpatch"
)

type patchOp = jsonpatch.Operation

// podPatch is the patch the webhook would answer (podpatch.Pod), rooted at
// prefix. For a workload (template true) only metadata and spec are kept:
// they are what a pod template has.
func podPatch(before, after *corev1.Pod, prefix string, template bool) ([]patchOp, error) {
	ops, err := podpatch.Pod(before, after)
	if err != nil {
		return nil, err
	}
	out := ops[:0]
	for _, op := range ops {
		if template && !underAny(op.Path, "/metadata", "/spec") {
			continue
		}
		op.Path = prefix + op.Path
		out = append(out, op)
	}
	return out, nil
}

func underAny(path string, roots ...string) bool {
	for _, r := range roots {
		if path == r || strings.HasPrefix(path, r+"/") {
			return true
		}
	}
	return false
}

// applyPatch applies ops to the document as written. Parents the document
// lacks (a template without metadata, say) are created, as the pod that the
// controller creates has them.
func applyPatch(doc []byte, ops []patchOp) ([]byte, error) {
	raw, err := json.Marshal(ops)
	if err != nil {
		return nil, err
	}
	p, err := jsonpatchapply.DecodePatch(raw)
	if err != nil {
		return nil, err
	}
	opts := jsonpatchapply.NewApplyOptions()
	opts.EnsurePathExistsOnAdd = true
	out, err := p.ApplyWithOptions(doc, opts)
	if err != nil {
		return nil, fmt.Errorf("applying %s: %w", raw, err)
	}
	return out, nil
}
