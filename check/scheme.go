package check

import (
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer/json"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"

	"github.com/gracekeeper/gracekeeper/policies/v1alpha1"
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
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		return nil, err
	}
	if err := v1alpha1.AddToScheme(s); err != nil {
		return nil, err
	}
	return &codecs{
		scheme:  s,
		lenient: json.NewSerializerWithOptions(json.DefaultMetaFactory, s, s, json.SerializerOptions{}),
		strict:  json.NewSerializerWithOptions(json.DefaultMetaFactory, s, s, json.SerializerOptions{Strict: true}),
	}, nil
}
