package cluster

import (
	"strings"
	"testing"
)

func TestReadiness(t *testing.T) {
	for _, tt := range []struct {
		name                 string
		leader, member       bool
		applied, commit, lag uint64
		ready                bool
		reason               string
	}{
		{"ready", true, true, 100, 100, 10, true, ""},
		{"within the lag", true, true, 95, 100, 10, true, ""},
		{"not caught up", true, true, 50, 100, 10, false, "catching up: applied 50 of 100"},
		{"no leader", false, true, 100, 100, 10, false, "no leader known"},
		{"not a member", true, false, 100, 100, 10, false, "not in the raft configuration"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ok, why := readiness(tt.leader, tt.member, tt.applied, tt.commit, tt.lag)
			if ok != tt.ready || !strings.Contains(why, tt.reason) {
				t.Fatalf("readiness = %v %q, want %v %q", ok, why, tt.ready, tt.reason)
			}
		})
	}
}
