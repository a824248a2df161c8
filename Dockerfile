# logdist's runtime image: the four static binaries on an empty base.
#
# Build it with `make image`, which first builds the binaries with
# CGO_ENABLED=0 into bin/linux-amd64/ (with the build host's CA bundle
# and an empty data directory beside them) and then runs podman build
# (or buildah bud). There is no build stage: the binaries are built
# outside, by the same Go as every other target, so the image needs no
# base image pulled from a registry.
#
#   podman run -d --name logdist -p 7400:7400 -p 7480:7480 -p 514:514/udp \
#     -v /etc/logdist/logdist.yaml:/etc/logdist/logdist.yaml:ro logdist:latest
#
# The config file holds the analyzers (keys are the flags' names); the
# flags below set what belongs to the container (addresses inside its
# network namespace, the data directory) and win over the file. A
# non-root process binding 514 needs net.ipv4.ip_unprivileged_port_start
# at 514 or lower in the container: Docker (20.10 and later) sets it to 0
# by default; with podman add --sysctl net.ipv4.ip_unprivileged_port_start=0.
FROM scratch

# Where the binaries are, relative to the build context.
ARG BIN=bin/linux-amd64

# Upstream TLS (analyzers with tls=true and no --upstream-tls-ca) and an
# https OTLP endpoint verify against the system roots, which Go reads
# from this file.
COPY ${BIN}/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY ${BIN}/logdist ${BIN}/analyzerd ${BIN}/logsend ${BIN}/logbench /usr/local/bin/
# --data-dir: the configuration versions. Owned by the runtime user, so
# that a named volume mounted here (which starts as a copy) is writable;
# /var/lib first, so that it is made root's, not the user's.
COPY ${BIN}/data /var/lib/
COPY --chown=65532:65532 ${BIN}/data /var/lib/logdist

# No root, no shell, nothing but the binaries. 65532 is "nonroot" in
# distroless images, and what Kubernetes manifests expect to run as.
USER 65532:65532
WORKDIR /var/lib/logdist

# 7400: agents (TCP); 7480: admin API, /healthz, /readyz, /metrics;
# 514/udp: syslog.
EXPOSE 7400 7480 514/udp

# scratch has no curl: logdist ctl health asks /healthz and exits 0 on
# 200, 1 otherwise, with the reason on one line.
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
  CMD ["/usr/local/bin/logdist","ctl","--admin","127.0.0.1:7480","--timeout","3s","health"]

# SIGTERM drains (GOAWAY to agents, then up to --drain-timeout, 10s by
# default): give docker stop / podman stop a longer -t than that.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/logdist"]
CMD ["--config", "/etc/logdist/logdist.yaml", "--admin", ":7480", "--syslog-udp", ":514", "--data-dir", "/var/lib/logdist"]
