// Package certs holds gracekeeper's self-managed certificate mode: the
// serving certificate for the admission webhook, signed by a private CA that
// gracekeeper itself creates, stored in one Secret, injected as caBundle into
// its two webhook configurations, and renewed before it expires.
//
// The other mode, certManager, lives entirely in the Helm chart
// (charts/gracekeeper/templates/certmanager.yaml): cert-manager issues the
// Secret and its cainjector writes caBundle, and the kubelet refreshes the
// mounted files. This package is then not used.
//
// Every replica serves TLS from files in a cert dir (controller-runtime's
// certwatcher reloads them without a restart). Only the elected leader writes
// the Secret and the webhook configurations (Rotator); every replica copies
// the Secret into its cert dir (Syncer). Bootstrap, run before the webhook
// server starts, fills an empty Secret once; concurrent replicas race safely
// through the Secret's resourceVersion (optimistic concurrency).
package certs
