// Package deploycheck holds the tests of deploy/: the Prometheus alerting
// and recording rules (deploy/prometheus), their promtool unit tests, and
// the Grafana dashboard (deploy/grafana/logdist.json).
//
// The tests run promtool check rules and promtool test rules, and yamllint
// with deploy/.yamllint, on deploy/prometheus; parse every PromQL expression
// of the dashboard with promtool (Grafana's variables replaced); and check
// that every metric name the rules and the dashboard use is a family logdist
// or analyzerd exports (admin.MetricCatalog, analyzerd.MetricFamilies and
// the frame server's under analyzerd_server), so that a renamed or
// misspelled metric fails here and not on a dashboard that stays empty.
//
// promtool (Debian package prometheus) and yamllint are installed with
// apt-get when the tests run as root on a Debian-like system; elsewhere the
// tests that need them are skipped, saying what to install.
//
// The package has no code of its own.
package deploycheck
