package main

import (
	"strings"
	"testing"
)

// A process that exits before its ready line (a busy port) ends the start
// at once, with its exit status; make run used to wait 15 s for the line.
func TestStartReturnsWhenTheProcessExits(t *testing.T) {
	p, err := start("busy", "/bin/sh", "-c", "echo 'cannot listen on 127.0.0.1:7400: address already in use' >&2; exit 2")
	if err == nil {
		p.cmd.Process.Kill()
		t.Fatal("start succeeded for a process that exited")
	}
	if !strings.Contains(err.Error(), "exited before it was ready") || !strings.Contains(err.Error(), "exit status 2") {
		t.Fatalf("error %q, want it to say the process exited and how", err)
	}
}
