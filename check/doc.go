// Package check is the offline side of gracekeeper (`gracekeeper check`): it
// reads pods and workloads from multi-document YAML, runs them through the
// same engine (package policies) that admission uses, and reports the mutated
// objects and the findings. It does no network I/O, so CI pipelines can run it
// before `kubectl apply`.
//
// Objects are changed by a JSON patch computed from the engine's change and
// applied to the document as written, so fields the Go types do not know (or
// omit when empty) survive, and unchanged documents are echoed byte for byte.
package check
