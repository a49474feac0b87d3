package webhook

import (
	kjson "sigs.k8s.io/json"
)

// unmarshal decodes as kube-apiserver does: field names are case-sensitive
// (sigs.k8s.io/json, the fork of encoding/json that apimachinery uses), so
// a field the API server would drop is not read here either.
func unmarshal(data []byte, v any) error {
	return kjson.UnmarshalCaseSensitivePreserveInts(data, v)
}
