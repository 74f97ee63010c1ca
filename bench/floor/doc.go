// Package floor holds benchmarks of the physical floor under a durable append on this machine:
// one small write plus fdatasync, and one raft log commit through raft-boltdb (what the leader
// and each follower pay per raft entry before an append can be acknowledged). They explain the
// 1-client latency of the cluster; see docs/performance.md.
//
//	go test -run '^$' -bench . -benchtime 2000x ./bench/floor/
package floor
