package api

import healthpb "google.golang.org/grpc/health/grpc_health_v1"

// ReadinessService is the gRPC health service name that reports readiness: SERVING when the node
// has a leader, is a member and is caught up (cairnd's /readyz says the same). The server-wide ""
// status reports liveness (SetServing), so that a node catching up is not restarted by a health
// check, yet load balancers can hold traffic until it is ready.
const ReadinessService = "cairn.ready"

// SetReady reports readiness on the health service under ReadinessService.
func (s *Service) SetReady(ready bool) {
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if ready {
		st = healthpb.HealthCheckResponse_SERVING
	}
	s.health.SetServingStatus(ReadinessService, st)
}
