// Package cluster owns raft and everything around it: the raft-boltdb log and stable store, the
// snapshot store, the transport, memberlist discovery and bootstrap, proposal batching, read
// consistency (read-index for linearizable reads, staleness bounds for follower reads) and
// membership. Packages above it (api) see it only through their own small interfaces.
package cluster
