// Command otlpsink is an OTLP/HTTP trace receiver that counts the spans it
// is sent and discards them: the collector end of a tracing benchmark, or
// a quick check that logdist, analyzerd and logsend export.
//
//	otlpsink --listen 127.0.0.1:4318
//
// GET /count answers the spans received so far.
package main

import (
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"sync/atomic"

	"github.com/spf13/pflag"
	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"
)

func main() {
	listen := pflag.String("listen", "127.0.0.1:4318", "address to receive OTLP/HTTP traces on (POST /v1/traces)")
	pflag.Parse()
	var spans, requests atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/traces", func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(io.LimitReader(r.Body, 64<<20))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var req coltrace.ExportTraceServiceRequest
		if err := proto.Unmarshal(b, &req); err != nil {
			http.Error(w, "not an OTLP ExportTraceServiceRequest: "+err.Error(), http.StatusBadRequest)
			return
		}
		for _, rs := range req.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				spans.Add(int64(len(ss.Spans)))
			}
		}
		requests.Add(1)
		out, _ := proto.Marshal(&coltrace.ExportTraceServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(out)
	})
	mux.HandleFunc("GET /count", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%d spans in %d requests\n", spans.Load(), requests.Load())
	})
	fmt.Fprintf(os.Stderr, "otlpsink ready listen=%s\n", *listen)
	log.Fatal(http.ListenAndServe(*listen, mux))
}
