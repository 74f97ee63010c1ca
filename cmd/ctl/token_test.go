package main

import (
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"github.com/cairndb/cairn/api"
	"github.com/cairndb/cairn/internal/testcluster"
)

// TestTokenCommands: cairnctl token create|list|revoke against a node with auth on, with the
// admin token from CAIRN_TOKEN and the created ones from --token.
func TestTokenCommands(t *testing.T) {
	const bootstrap = "bootstrap-token-for-ctl-tests"
	tc := testcluster.NewWithOptions(t, 1, testcluster.Options{LogLevel: slog.LevelError,
		API: api.Config{Auth: api.AuthConfig{Enabled: true, BootstrapToken: bootstrap}}})
	addr := []string{"--addr", tc.Addrs()[0], "--timeout", "10s"}
	adminEnv := map[string]string{"CAIRN_TOKEN": bootstrap}
	run := func(env map[string]string, args ...string) cliResult {
		t.Helper()
		return runCLI(t, env, "", append(append([]string{}, addr...), args...)...)
	}

	if r := run(nil, "append", "orders-1", "--type", "A", "--data", "{}"); r.code == 0 || !strings.Contains(r.err, "unauthenticated") {
		t.Fatalf("append without a token: exit %d, %s", r.code, r.err)
	}
	r := run(adminEnv, "--json", "token", "create", "--role", "writer", "--prefix", "orders-", "--name", "svc")
	if r.code != 0 {
		t.Fatalf("create: %d %s", r.code, r.err)
	}
	var created struct {
		Secret string `json:"secret"`
		Token  struct {
			ID       string   `json:"id"`
			Role     string   `json:"role"`
			Prefixes []string `json:"prefixes"`
		} `json:"token"`
	}
	if err := json.Unmarshal([]byte(r.out), &created); err != nil || created.Secret == "" || created.Token.Role != "writer" {
		t.Fatalf("create output %q: %v", r.out, err)
	}
	if r := run(nil, "--token", created.Secret, "append", "orders-1", "--type", "A", "--data", "{}"); r.code != 0 {
		t.Fatalf("writer append to orders-1: %d %s", r.code, r.err)
	}
	if r := run(nil, "--token", created.Secret, "append", "users-1", "--type", "A", "--data", "{}"); r.code == 0 || !strings.Contains(r.err, "permission denied") {
		t.Fatalf("writer append to users-1: exit %d, %s", r.code, r.err)
	}
	if r := run(adminEnv, "token", "list"); r.code != 0 || !strings.Contains(r.out, created.Token.ID) || !strings.Contains(r.out, "orders-") {
		t.Fatalf("list: %d %q %s", r.code, r.out, r.err)
	}
	if r := run(adminEnv, "token", "create", "--role", "root"); r.code != exitUsage {
		t.Fatalf("bad role: exit %d", r.code)
	}
	if r := run(adminEnv, "token", "revoke", created.Token.ID); r.code != 0 {
		t.Fatalf("revoke: %d %s", r.code, r.err)
	}
	if r := run(nil, "--token", created.Secret, "read", "orders-1"); r.code == 0 {
		t.Fatal("a revoked token still reads")
	}
	if r := run(adminEnv, "--help"); strings.Contains(r.out, bootstrap) {
		t.Fatal("help shows the token from the environment")
	}
}
