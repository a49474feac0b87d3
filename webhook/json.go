package webhook

import (
	"encoding/json"

	kjson "sigs.k8s.io/json"
)

// The webhook reads JSON with sigs.k8s.io/json, the decoder kube-apiserver
// itself uses (k8s.io/apimachinery/pkg/runtime/serializer/json/json.go
// Serializer.unmarshal): field names match case-sensitively, so a key like
// "annotatioNs" is an unknown field here exactly as it is to the API server,
// and a repeated key is read as the API server reads it: the last value
// counts (encoding/json semantics). The API server reports repeated keys of
// a create as warnings (fieldValidation defaults to Warn,
// k8s.io/apiserver/pkg/endpoints/handlers/rest.go fieldValidation); we do
// the same: decodeReporting returns them for the response's warnings.

// unmarshal decodes as kube-apiserver does (case-sensitive, integers kept
// as int64 in interface values).
func unmarshal(data []byte, v any) error {
	return kjson.UnmarshalCaseSensitivePreserveInts(data, v)
}

// decodeReporting is unmarshal in the same single pass that also reports
// repeated keys (kjson.DisallowDuplicateFields as a strict check, not a
// failure). Unknown fields are not reported: the API server has already
// dropped or refused them in the objects it sends.
func decodeReporting(data []byte, v any) (duplicates []error, err error) {
	return kjson.UnmarshalStrict(data, v, kjson.DisallowDuplicateFields)
}

// marshal encodes the response and the patch (encoding/json: the API
// server decodes them with the same rules).
func marshal(v any) ([]byte, error) {
	return json.Marshal(v)
}
