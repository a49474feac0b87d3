package webhook

import (
	goccy "github.com/goccy/go-json"
	kjson "sigs.k8s.io/json"
)

// unmarshal decodes as kube-apiserver does: field names are case-sensitive
// (sigs.k8s.io/json, the fork of encoding/json that apimachinery uses). It
// serves the rare paths (workloads, error messages for bad input).
func unmarshal(data []byte, v any) error {
	return kjson.UnmarshalCaseSensitivePreserveInts(data, v)
}

// fastUnmarshal is the hot path for pod reviews: github.com/goccy/go-json
// decodes a pod about 2-4x faster than encoding/json on our benchmark pods
// (BenchmarkDecoders). It honours the same struct tags and the types' own
// UnmarshalJSON (Quantity, Time, IntOrString); unlike the API server it
// matches field names case-insensitively, which cannot matter for objects
// the API server itself serialised. TestFastDecodeMatches checks both
// decoders agree on every test request.
func fastUnmarshal(data []byte, v any) error {
	return goccy.Unmarshal(data, v)
}

// fastMarshal encodes the response and the patch with goccy/go-json: the
// same output as encoding/json for these types (the golden tests compare
// bytes), with fewer allocations.
func fastMarshal(v any) ([]byte, error) {
	return goccy.Marshal(v)
}
