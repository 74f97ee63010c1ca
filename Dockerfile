# Cairn node image. No base image can be pulled here, so it is FROM scratch with static binaries
# built on the host first (`make images` runs `make build` with CGO_ENABLED=0).
#
# Contents: /cairnd, /cairnctl, an empty /data owned by the runtime user (a named volume mounted
# there inherits that ownership), and /tmp. No CA certificates: nothing in the image dials out to
# the internet, and cluster TLS uses the cluster's own CA, mounted with the node's certificate
# (docker-compose.yml mounts .cairn/compose-tls at /tls). cairnd refuses to start without TLS
# material unless CAIRN_DEV_INSECURE=true. The health check's cairnctl reads CAIRN_CA, CAIRN_CERT
# and CAIRN_KEY (plaintext when unset, which only a dev-insecure node accepts).
FROM scratch
COPY --chown=10001:10001 .docker/rootfs/ /
COPY bin/cairnd bin/cairnctl /
USER 10001:10001
VOLUME ["/data"]
# gRPC API, raft, gossip (TCP+UDP), metrics
EXPOSE 7101 7201 7301 7301/udp 9100
ENV PATH=/ \
    CAIRN_DATA_DIR=/data \
    CAIRN_GRPC_BIND=0.0.0.0:7101 \
    CAIRN_RAFT_BIND=0.0.0.0:7201 \
    CAIRN_GOSSIP_BIND=0.0.0.0:7301 \
    CAIRN_METRICS_BIND=0.0.0.0:9100 \
    CAIRN_LOG_FORMAT=json
HEALTHCHECK --interval=2s --timeout=2s --start-period=5s --retries=5 \
    CMD ["/cairnctl", "health", "--addr", "127.0.0.1:7101"]
ENTRYPOINT ["/cairnd"]
