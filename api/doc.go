// Package api serves Cairn's public gRPC API: the Events service (Append, AppendMulti, Read,
// ReadAll), the Cluster service (Status), the standard gRPC health service and server
// reflection.
//
// The package is the edge of the system. It validates every request (names, ids, sizes,
// enums) so that bad input never reaches the replicated log; translates requests into state
// machine commands (fsm/fsmpb) and read calls; forwards to the leader, one hop, what a follower
// cannot serve; and maps every outcome, in one place (statusFromError), to exactly one gRPC
// status with typed details: an errdetails.ErrorInfo with a stable Reason in the ErrorDomain
// "cairn.dev", plus errdetails.BadRequest, errdetails.ResourceInfo or a cairnpb detail
// message (DESIGN §6).
//
// The service programs against Node, a consumer-side interface declared here, so it never
// touches *raft.Raft and is tested against a fake that wraps a real fsm.FSM. See DESIGN.md in
// this directory for the error table, limits, forwarding and read paging rules.
package api
