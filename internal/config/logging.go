package config

import "github.com/logdist/logdist/internal/cli"

// LogComponents are the components --log-level may name: the "component"
// attribute of logdist's subsystems' loggers. admin, auth and tls get
// theirs in cmd/logdist; balancer, control, proxy and syslog name their
// own.
var LogComponents = []string{"admin", "auth", "balancer", "control", "proxy", "syslog", "tls"}

// ParseLogLevel reads logdist's --log-level: a level, or levels per
// component (cli.ParseLevels) of LogComponents.
func ParseLogLevel(s string) (cli.LevelSpec, error) {
	spec, err := cli.ParseLevels(s)
	if err != nil {
		return spec, err
	}
	return spec, spec.Check(LogComponents)
}
