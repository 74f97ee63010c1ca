// Package systemtest runs Cairn as real cairnd processes on loopback and checks the promises
// that only hold across processes: kill -9 of a leader under load, paused (SIGSTOP) leaders,
// restarts, and the gRPC error table end to end. It holds tests and benchmarks only.
package systemtest
