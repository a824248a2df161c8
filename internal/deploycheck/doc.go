// Package deploycheck holds the tests of deploy/ and of the packaging:
// the Prometheus alerting and recording rules (deploy/prometheus), their
// promtool unit tests, the Grafana dashboard (deploy/grafana/logdist.json),
// the systemd units (deploy/systemd), the Dockerfile and the static
// binaries that make image and make release ship.
//
// The tests run promtool check rules and promtool test rules, and yamllint
// with deploy/.yamllint, on deploy/prometheus; parse every PromQL expression
// of the dashboard with promtool (Grafana's variables replaced); and check
// that every metric name the rules and the dashboard use is a family logdist
// or analyzerd exports (admin.MetricCatalog, analyzerd.MetricFamilies and
// the frame server's under analyzerd_server), so that a renamed or
// misspelled metric fails here and not on a dashboard that stays empty.
//
// The packaging is checked too: the systemd units of deploy/systemd with
// systemd-analyze verify and security (the binaries built and in place),
// their stop timeout against the binaries' drain timeouts, and their user
// against logdist.sysusers; the four binaries, built as make image and
// make release build them (CGO_ENABLED=0, the version stamped), are
// static ELF executables that say the stamp; and the Dockerfile builds
// with podman into an image holding them, run as 65532:65532, with its
// HEALTHCHECK (inspected, not run).
//
// promtool (Debian package prometheus), yamllint, systemd-analyze (systemd)
// and podman are installed with apt-get when the tests run as root on a
// Debian-like system; elsewhere the tests that need them are skipped,
// saying what to install.
//
// The package has no code of its own.
package deploycheck
