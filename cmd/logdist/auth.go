package main

import (
	"bufio"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/pflag"

	"github.com/logdist/logdist/internal/agentauth"
)

const authUsage = `Usage: logdist auth hash [--new | TOKEN]

Prints the SHA-256 of an agent token as --auth-file's token-sha256 wants it.
The token is read from the first line of standard input (so that it stays
out of the shell history and the process list), or taken as the argument.
With --new, a random token (256 bits, base64url) is made and printed first,
then its hash: give the token to the agent (logsend --token), keep only the
hash in the auth file.

Flags:
`

// runAuth is "logdist auth".
func runAuth(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("logdist auth", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	newToken := fs.Bool("new", false, "make a random token and print it, then its hash")
	fs.Usage = func() { fmt.Fprint(stderr, authUsage); fs.PrintDefaults() }
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return 0
		}
		return 2
	}
	rest := fs.Args()
	if len(rest) == 0 || rest[0] != "hash" || len(rest) > 2 || (*newToken && len(rest) > 1) {
		fs.Usage()
		return 2
	}
	var token string
	switch {
	case *newToken:
		var b [32]byte
		_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
		token = base64.RawURLEncoding.EncodeToString(b[:])
		fmt.Fprintf(stdout, "token: %s\n", token)
	case len(rest) == 2:
		token = rest[1]
	default:
		line, err := bufio.NewReader(io.LimitReader(stdin, 1<<16)).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			fmt.Fprintf(stderr, "logdist auth hash: reading the token: %v\n", err)
			return 1
		}
		token = strings.TrimRight(line, "\r\n")
	}
	if token == "" {
		fmt.Fprintln(stderr, "logdist auth hash: empty token")
		return 2
	}
	if len(token) < 16 {
		fmt.Fprintln(stderr, "logdist auth hash: warning: a token shorter than 16 characters can be guessed; use --new")
	}
	if *newToken {
		fmt.Fprint(stdout, "token-sha256: ")
	}
	fmt.Fprintln(stdout, agentauth.HashToken(token))
	return 0
}
