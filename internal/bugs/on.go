//go:build jepsenbugs

package bugs

import (
	"os"
	"strings"
	"sync"
)

var live = sync.OnceValue(func() map[string]bool {
	m := map[string]bool{}
	for _, name := range strings.Split(os.Getenv("CAIRN_BUG"), ",") {
		if name = strings.TrimSpace(name); name != "" {
			m[name] = true
		}
	}
	return m
})

// Enabled reports whether the named bug is listed in CAIRN_BUG.
func Enabled(name string) bool { return live()[name] }
