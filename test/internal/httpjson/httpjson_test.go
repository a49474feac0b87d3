package httpjson

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestPost(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
			http.Error(w, "want a JSON POST", http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusAccepted)
		_, _ = w.Write(append([]byte("got "), b...))
	}))
	defer srv.Close()
	code, out, err := Post(context.Background(), srv.Client(), srv.URL, []byte(`{"a":1}`))
	if err != nil || code != http.StatusAccepted || string(out) != `got {"a":1}` {
		t.Errorf("Post = %d, %q, %v; want 202, %q, nil", code, out, err, `got {"a":1}`)
	}
	if _, _, err := Post(context.Background(), srv.Client(), "http://127.0.0.1:0/", nil); err == nil {
		t.Error("Post to a closed port: no error")
	}
}
