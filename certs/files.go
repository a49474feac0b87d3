package certs

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
)

// File names in the cert dir: controller-runtime's webhook server defaults.
const (
	CertFile = "tls.crt"
	KeyFile  = "tls.key"
	CAFile   = "ca.crt"
)

// WriteFiles writes the serving pair (and the CA bundle) into dir, each file
// atomically (temp file + rename), so the certwatcher never reads half a file.
// It reports whether anything changed. The key is written before the
// certificate: certwatcher reloads on the certificate's event and, should it
// read between the two renames, fails that load and keeps the old pair.
func WriteFiles(dir string, b *Bundle) (bool, error) {
	// The chart mounts an emptyDir here; run elsewhere, the dir may not exist yet.
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return false, err
	}
	changed := false
	for _, f := range []struct {
		name string
		data []byte
		mode os.FileMode
	}{{KeyFile, b.KeyPEM, 0o600}, {CertFile, b.CertPEM, 0o644}, {CAFile, b.CABundle, 0o644}} {
		c, err := writeIfChanged(filepath.Join(dir, f.name), f.data, f.mode)
		if err != nil {
			return changed, err
		}
		changed = changed || c
	}
	return changed, nil
}

func writeIfChanged(path string, data []byte, mode os.FileMode) (bool, error) {
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
		return false, nil
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return false, fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name()) // no-op after a successful rename
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return false, fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return false, err
	}
	if err := tmp.Close(); err != nil {
		return false, err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return false, fmt.Errorf("write %s: %w", path, err)
	}
	return true, nil
}
