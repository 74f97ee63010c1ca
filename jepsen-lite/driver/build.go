package driver

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Build compiles cairnd from the module at moduleDir into outDir and returns its path. tags are
// build tags ("jepsenbugs" plants the canary bugs); race builds with the race detector (needs
// cgo), otherwise the binary is static like the release build.
func Build(ctx context.Context, moduleDir, outDir string, tags []string, race bool) (string, error) {
	name := "cairnd"
	if len(tags) > 0 {
		name += "-" + strings.Join(tags, "-")
	}
	if race {
		name += "-race"
	}
	out, err := filepath.Abs(filepath.Join(outDir, name))
	if err != nil {
		return "", fmt.Errorf("driver: %w", err)
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return "", fmt.Errorf("driver: %w", err)
	}
	args := []string{"build", "-o", out}
	if len(tags) > 0 {
		args = append(args, "-tags", strings.Join(tags, ","))
	}
	if race {
		args = append(args, "-race")
	}
	args = append(args, "./cmd/node")
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = moduleDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if race {
		cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
	}
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("driver: go %s: %w\n%s", strings.Join(args, " "), err, b)
	}
	return out, nil
}

// ModuleRoot returns the directory of the go.mod above dir (the Cairn module).
func ModuleRoot(dir string) (string, error) {
	d, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("driver: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		parent := filepath.Dir(d)
		if parent == d {
			return "", fmt.Errorf("driver: no go.mod above %s", dir)
		}
		d = parent
	}
}
