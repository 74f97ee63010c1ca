package tlsutil

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"strings"
)

// GossipKeyBytes is the size of a generated gossip key: AES-256.
const GossipKeyBytes = 32

// ErrNoGossipKey: a gossip key file holds no key.
var ErrNoGossipKey = errors.New("tlsutil: gossip key file holds no key")

// LoadGossipKeys reads a gossip key file: one base64 key per line (16, 24 or 32 bytes once
// decoded; AES-128/192/256), blank lines and lines starting with '#' ignored. The first key is
// the primary, which encrypts what this node sends; every key listed decrypts what it receives.
// Rotation: add the new key as a second line on every node (reload), move it first (reload),
// then delete the old line (reload).
func LoadGossipKeys(path string) (primary []byte, all [][]byte, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("tlsutil: read gossip key file: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for line := 1; sc.Scan(); line++ {
		s := strings.TrimSpace(sc.Text())
		if s == "" || strings.HasPrefix(s, "#") {
			continue
		}
		k, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return nil, nil, fmt.Errorf("tlsutil: gossip key file %s line %d: not base64: %w", path, line, err)
		}
		if n := len(k); n != 16 && n != 24 && n != 32 {
			return nil, nil, fmt.Errorf("tlsutil: gossip key file %s line %d: key is %d bytes, want 16, 24 or 32", path, line, n)
		}
		all = append(all, k)
	}
	if err := sc.Err(); err != nil {
		return nil, nil, fmt.Errorf("tlsutil: read gossip key file: %w", err)
	}
	if len(all) == 0 {
		return nil, nil, fmt.Errorf("%w: %s", ErrNoGossipKey, path)
	}
	return all[0], all, nil
}

// NewGossipKey returns a random AES-256 gossip key, base64-encoded.
func NewGossipKey() (string, error) {
	k := make([]byte, GossipKeyBytes)
	if _, err := rand.Read(k); err != nil {
		return "", fmt.Errorf("tlsutil: generate gossip key: %w", err)
	}
	return base64.StdEncoding.EncodeToString(k), nil
}

// WriteGossipKeyFile writes a new random key to path (0600).
func WriteGossipKeyFile(path string) error {
	k, err := NewGossipKey()
	if err != nil {
		return err
	}
	return writeAtomic(path, []byte("# cairn gossip keyring: first key is primary (see tlsutil.LoadGossipKeys)\n"+k+"\n"), 0o600)
}

// WriteGossipKeys writes keys (primary first) to path as a gossip key file (0600), through a
// temporary file renamed into place.
func WriteGossipKeys(path string, keys [][]byte) error {
	if len(keys) == 0 {
		return ErrNoGossipKey
	}
	var b strings.Builder
	b.WriteString("# cairn gossip keyring: first key is primary (see tlsutil.LoadGossipKeys)\n")
	for _, k := range keys {
		b.WriteString(base64.StdEncoding.EncodeToString(k) + "\n")
	}
	return writeAtomic(path, []byte(b.String()), 0o600)
}
