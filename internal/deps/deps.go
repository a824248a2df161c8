package deps

import (
	_ "github.com/VictoriaMetrics/metrics"
	_ "github.com/klauspost/compress/zstd"
	_ "github.com/panjf2000/gnet/v2"
	_ "github.com/spf13/pflag"
	_ "go.uber.org/goleak"
	_ "pgregory.net/rapid"
)
