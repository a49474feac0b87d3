package check

import (
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer/json"

	"github.com/gracekeeper/gracekeeper/internal/clientscheme"
)

// codecs are the decoders one check run uses. They are built per run from a
// fresh scheme: no package-level registration.
type codecs struct {
	scheme *runtime.Scheme
	// lenient decodes the objects under review; strict decodes them again to
	// spot fields the API server's strict field validation would refuse.
	lenient runtime.Decoder
	strict  runtime.Decoder
}

func newCodecs() (*codecs, error) {
	s, err := clientscheme.New()
	if err != nil {
		return nil, err
	}
	return &codecs{
		scheme:  s,
		lenient: json.NewSerializerWithOptions(json.DefaultMetaFactory, s, s, json.SerializerOptions{}),
		strict:  json.NewSerializerWithOptions(json.DefaultMetaFactory, s, s, json.SerializerOptions{Strict: true}),
	}, nil
}
