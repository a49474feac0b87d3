// Package podpatch builds the JSON patch (RFC 6902) from a pod to the pod the
// policy engine made of it, from the change itself, so that it applies to the
// object as written (the raw AdmissionReview object, a YAML document) and
// leaves every field our Go types do not know in place. The webhook answers
// admission with it; gracekeeper check applies it to the input documents.
package podpatch

import (
	"encoding/json"
	"errors"
	"maps"
	"slices"
	"strconv"
	"strings"

	"gomodules.xyz/jsonpatch/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
)

// Pod is the JSON patch that turns before into after, built from the change
// itself, path by path, so it applies to the raw object and leaves every
// field our Go types do not know in place.
//
// The engine changes only these (docs/design.md): metadata labels,
// annotations and finalizers, spec.terminationGracePeriodSeconds and the
// lifecycle of containers and init containers. Those get precise ops here.
// Where the containers differ in shape (count, stop signal) the patch falls
// back to a full diff of the two typed pods. A deep comparison of the rest
// on every request would cost more than the whole decode, so it lives in
// the tests instead: TestPatchReproducesEngine applies the patch of every
// engine golden case (policies/testdata) and requires exactly the engine's
// pod, so an engine change elsewhere fails there.
func Pod(before, after *corev1.Pod) ([]jsonpatch.Operation, error) {
	var ops []jsonpatch.Operation
	ops = mapOps(ops, "/metadata/labels", before.Labels, after.Labels)
	ops = mapOps(ops, "/metadata/annotations", before.Annotations, after.Annotations)
	if !slices.Equal(before.Finalizers, after.Finalizers) {
		ops = setOp(ops, "/metadata/finalizers", before.Finalizers != nil, after.Finalizers, after.Finalizers == nil)
	}
	if !ptrEqual(before.Spec.TerminationGracePeriodSeconds, after.Spec.TerminationGracePeriodSeconds) {
		ops = setOp(ops, "/spec/terminationGracePeriodSeconds", before.Spec.TerminationGracePeriodSeconds != nil,
			after.Spec.TerminationGracePeriodSeconds, after.Spec.TerminationGracePeriodSeconds == nil)
	}
	var ok bool
	if ops, ok = lifecycleOps(ops, "/spec/containers", before.Spec.Containers, after.Spec.Containers); !ok {
		return fullPatch(before, after)
	}
	if ops, ok = lifecycleOps(ops, "/spec/initContainers", before.Spec.InitContainers, after.Spec.InitContainers); !ok {
		return fullPatch(before, after)
	}
	return ops, nil
}

// setOp sets path to v: "add" replaces an existing member (RFC 6902 4.1),
// so it serves for new and changed values alike; remove when v is gone.
func setOp(ops []jsonpatch.Operation, path string, existed bool, v any, gone bool) []jsonpatch.Operation {
	if gone {
		if existed {
			return append(ops, jsonpatch.Operation{Operation: "remove", Path: path})
		}
		return ops
	}
	return append(ops, jsonpatch.Operation{Operation: "add", Path: path, Value: v})
}

func mapOps(ops []jsonpatch.Operation, path string, before, after map[string]string) []jsonpatch.Operation {
	if maps.Equal(before, after) {
		return ops
	}
	if before == nil {
		// The raw object has no such map (or null): add it whole.
		return append(ops, jsonpatch.Operation{Operation: "add", Path: path, Value: after})
	}
	if after == nil {
		return append(ops, jsonpatch.Operation{Operation: "remove", Path: path})
	}
	// Sorted keys keep the patch deterministic (goldens, reinvocation).
	// Removals are rare (the engine only adds): look before sorting.
	removed := false
	for k := range before {
		if _, ok := after[k]; !ok {
			removed = true
			break
		}
	}
	if removed {
		for _, k := range slices.Sorted(maps.Keys(before)) {
			if _, ok := after[k]; !ok {
				ops = append(ops, jsonpatch.Operation{Operation: "remove", Path: path + "/" + escape(k)})
			}
		}
	}
	for _, k := range slices.Sorted(maps.Keys(after)) {
		if v, ok := before[k]; !ok || v != after[k] {
			ops = append(ops, jsonpatch.Operation{Operation: "add", Path: path + "/" + escape(k), Value: after[k]})
		}
	}
	return ops
}

// lifecycleOps patches each container's lifecycle.preStop/postStart. ok is
// false when the containers differ in any other way than their lifecycle.
func lifecycleOps(ops []jsonpatch.Operation, path string, before, after []corev1.Container) ([]jsonpatch.Operation, bool) {
	if len(before) != len(after) {
		return ops, false
	}
	for i := range before {
		b, a := before[i].Lifecycle, after[i].Lifecycle
		if equality.Semantic.DeepEqual(b, a) {
			continue
		}
		p := path + "/" + strconv.Itoa(i) + "/lifecycle"
		if b == nil || a == nil {
			ops = setOp(ops, p, b != nil, a, a == nil)
			continue
		}
		if !equality.Semantic.DeepEqual(b.PreStop, a.PreStop) {
			ops = setOp(ops, p+"/preStop", b.PreStop != nil, a.PreStop, a.PreStop == nil)
		}
		if !equality.Semantic.DeepEqual(b.PostStart, a.PostStart) {
			ops = setOp(ops, p+"/postStart", b.PostStart != nil, a.PostStart, a.PostStart == nil)
		}
		if b.StopSignal != a.StopSignal {
			return ops, false
		}
	}
	return ops, true
}

// fullPatch diffs the two pods marshalled through the same Go types, so the
// patch holds only the change, never the noise of typed-vs-raw differences.
func fullPatch(before, after *corev1.Pod) ([]jsonpatch.Operation, error) {
	a, errBefore := json.Marshal(before)
	b, errAfter := json.Marshal(after)
	if err := errors.Join(errBefore, errAfter); err != nil {
		return nil, err
	}
	return jsonpatch.CreatePatch(a, b)
}

func ptrEqual(a, b *int64) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

// escape makes a map key a JSON pointer token (RFC 6901 section 3).
func escape(s string) string {
	if !strings.ContainsAny(s, "~/") {
		return s
	}
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}
