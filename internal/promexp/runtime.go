package promexp

import (
	"io"

	"github.com/VictoriaMetrics/metrics"
)

// WriteProcess writes the Go runtime's and the process's metrics
// (VictoriaMetrics/metrics' set of them, documented by Runtime).
func WriteProcess(w io.Writer) {
	metrics.WriteProcessMetrics(w)
	metrics.WriteFDMetrics(w)
}

// Runtime documents the go_* and process_* families that
// VictoriaMetrics/metrics writes (WriteProcessMetrics) on Linux.
var Runtime = []Family{
	{"go_sched_latencies_seconds", "histogram", "Time goroutines spent runnable before they ran (runtime/metrics /sched/latencies:seconds).", ""},
	{"go_mutex_wait_seconds_total", "counter", "Time goroutines spent blocked on a sync.Mutex or sync.RWMutex, in seconds.", ""},
	{"go_gc_mark_assist_cpu_seconds_total", "counter", "CPU time goroutines spent helping the garbage collector mark, in seconds.", ""},
	{"go_gc_cpu_seconds_total", "counter", "CPU time spent in the garbage collector, in seconds.", ""},
	{"go_gc_pauses_seconds", "histogram", "Stop-the-world pauses of the garbage collector.", ""},
	{"go_scavenge_cpu_seconds_total", "counter", "CPU time the runtime spent returning memory to the OS, in seconds.", ""},
	{"go_memlimit_bytes", "gauge", "The Go runtime's soft memory limit (GOMEMLIMIT), in bytes.", ""},
	{"go_memstats_alloc_bytes", "gauge", "Bytes of heap objects allocated and not yet freed.", ""},
	{"go_memstats_alloc_bytes_total", "counter", "Bytes allocated for heap objects, in total.", ""},
	{"go_memstats_buck_hash_sys_bytes", "gauge", "Bytes of memory in profiling bucket hash tables.", ""},
	{"go_memstats_frees_total", "counter", "Heap objects freed.", ""},
	{"go_memstats_gc_cpu_fraction", "gauge", "Fraction of the available CPU time the garbage collector used since the program started.", ""},
	{"go_memstats_gc_sys_bytes", "gauge", "Bytes of memory in garbage collection metadata.", ""},
	{"go_memstats_heap_alloc_bytes", "gauge", "Bytes of heap objects allocated and not yet freed.", ""},
	{"go_memstats_heap_idle_bytes", "gauge", "Bytes in idle (unused) heap spans.", ""},
	{"go_memstats_heap_inuse_bytes", "gauge", "Bytes in in-use heap spans.", ""},
	{"go_memstats_heap_objects", "gauge", "Heap objects allocated and not yet freed.", ""},
	{"go_memstats_heap_released_bytes", "gauge", "Bytes of physical memory returned to the OS.", ""},
	{"go_memstats_heap_sys_bytes", "gauge", "Bytes of heap memory obtained from the OS.", ""},
	{"go_memstats_last_gc_time_seconds", "gauge", "When the last garbage collection finished, in seconds since the Unix epoch.", ""},
	{"go_memstats_lookups_total", "counter", "Pointer lookups performed by the runtime.", ""},
	{"go_memstats_mallocs_total", "counter", "Heap objects allocated.", ""},
	{"go_memstats_mcache_inuse_bytes", "gauge", "Bytes in mcache structures in use.", ""},
	{"go_memstats_mcache_sys_bytes", "gauge", "Bytes of memory obtained from the OS for mcache structures.", ""},
	{"go_memstats_mspan_inuse_bytes", "gauge", "Bytes in mspan structures in use.", ""},
	{"go_memstats_mspan_sys_bytes", "gauge", "Bytes of memory obtained from the OS for mspan structures.", ""},
	{"go_memstats_next_gc_bytes", "gauge", "Heap size at which the next garbage collection starts, in bytes.", ""},
	{"go_memstats_other_sys_bytes", "gauge", "Bytes of memory in miscellaneous runtime allocations.", ""},
	{"go_memstats_stack_inuse_bytes", "gauge", "Bytes in goroutine stack spans.", ""},
	{"go_memstats_stack_sys_bytes", "gauge", "Bytes of stack memory obtained from the OS.", ""},
	{"go_memstats_sys_bytes", "gauge", "Bytes of memory obtained from the OS in total.", ""},
	{"go_cgo_calls_total", "counter", "Calls from Go to C (written by the library as go_cgo_calls_count).", "go_cgo_calls_count"},
	{"go_cpus", "gauge", "CPUs the process may use (written by the library as go_cpu_count, a name Prometheus reserves for summaries and histograms).", "go_cpu_count"},
	{"go_gc_duration_seconds", "summary", "Garbage collection pause durations.", ""},
	{"go_gc_forced_total", "counter", "Garbage collections forced by the application (written by the library as go_gc_forced_count).", "go_gc_forced_count"},
	{"go_gomaxprocs", "gauge", "GOMAXPROCS: the Go threads that may run at once.", ""},
	{"go_goroutines", "gauge", "Goroutines that exist now.", ""},
	{"go_threads", "gauge", "OS threads the Go runtime created.", ""},
	{"go_info", "gauge", "Always 1; label version: the Go version the binary was built with.", ""},
	{"go_info_ext", "gauge", "Always 1; labels: the runtime's GOGC and GOMEMLIMIT settings.", ""},
	{"process_cpu_seconds_system_total", "counter", "CPU time the process spent in the kernel, in seconds.", ""},
	{"process_cpu_seconds_total", "counter", "CPU time the process spent, user and kernel, in seconds.", ""},
	{"process_cpu_seconds_user_total", "counter", "CPU time the process spent in user space, in seconds.", ""},
	{"process_major_pagefaults_total", "counter", "Page faults that needed a disk read.", ""},
	{"process_minor_pagefaults_total", "counter", "Page faults served without a disk read.", ""},
	{"process_num_threads", "gauge", "OS threads of the process.", ""},
	{"process_resident_memory_bytes", "gauge", "Resident set size, in bytes.", ""},
	{"process_start_time_seconds", "gauge", "When the process started, in seconds since the Unix epoch.", ""},
	{"process_virtual_memory_bytes", "gauge", "Virtual memory size, in bytes.", ""},
	{"process_virtual_memory_peak_bytes", "gauge", "Peak virtual memory size, in bytes.", ""},
	{"process_resident_memory_peak_bytes", "gauge", "Peak resident set size, in bytes.", ""},
	{"process_resident_memory_anon_bytes", "gauge", "Resident anonymous memory, in bytes.", ""},
	{"process_resident_memory_file_bytes", "gauge", "Resident file-backed memory, in bytes.", ""},
	{"process_resident_memory_shared_bytes", "gauge", "Resident shared memory, in bytes.", ""},
	{"process_io_read_bytes_total", "counter", "Bytes the process read (any source: /proc/self/io rchar).", ""},
	{"process_io_written_bytes_total", "counter", "Bytes the process wrote (any sink: /proc/self/io wchar).", ""},
	{"process_io_read_syscalls_total", "counter", "Read system calls the process made.", ""},
	{"process_io_write_syscalls_total", "counter", "Write system calls the process made.", ""},
	{"process_io_storage_read_bytes_total", "counter", "Bytes the process read from storage.", ""},
	{"process_io_storage_written_bytes_total", "counter", "Bytes the process wrote to storage.", ""},
	{"process_pressure_cpu_waiting_seconds_total", "counter", "Time some of the process's tasks waited for a CPU (PSI), in seconds.", ""},
	{"process_pressure_cpu_stalled_seconds_total", "counter", "Time all of the process's tasks waited for a CPU (PSI), in seconds.", ""},
	{"process_pressure_io_waiting_seconds_total", "counter", "Time some of the process's tasks waited for I/O (PSI), in seconds.", ""},
	{"process_pressure_io_stalled_seconds_total", "counter", "Time all of the process's tasks waited for I/O (PSI), in seconds.", ""},
	{"process_pressure_memory_waiting_seconds_total", "counter", "Time some of the process's tasks waited for memory (PSI), in seconds.", ""},
	{"process_pressure_memory_stalled_seconds_total", "counter", "Time all of the process's tasks waited for memory (PSI), in seconds.", ""},
	{"process_cgroup_cpu_throttled_seconds_total", "counter", "Time the process's cgroup was throttled by its CPU limit, in seconds.", ""},
	{"process_open_fds", "gauge", "Open file descriptors.", ""},
	{"process_max_fds", "gauge", "The limit on open file descriptors.", ""},
}
