//go:build !unix

package balancer

import "time"

func processCPU() (time.Duration, bool) { return 0, false }
