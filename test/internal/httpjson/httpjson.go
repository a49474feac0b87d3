// Package httpjson posts JSON (AdmissionReviews) to a server under test.
package httpjson

import (
	"bytes"
	"context"
	"io"
	"net/http"
)

// maxAnswer bounds the answer read: an AdmissionReview answer is far
// smaller, and a test tool never holds more whatever the server sends.
const maxAnswer = 16 << 20

// Post posts body as JSON to url and returns the answer's status code and
// body (at most 16 MiB of it).
func Post(ctx context.Context, hc *http.Client, url string, body []byte) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	return resp.StatusCode, out, err
}
