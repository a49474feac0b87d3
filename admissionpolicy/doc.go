// Package admissionpolicy compiles LifecyclePolicies into the API server's
// own admission: each policy's budget validation into a
// ValidatingAdmissionPolicy + binding and, in apiserver mode, its mutation
// into a MutatingAdmissionPolicy (JSONPatch) + binding, all owned by the
// policy. Compile is pure; the Reconciler (leader only) keeps the objects
// in step with the policies. docs/admission-modes.md compares the modes.
package admissionpolicy
