package cli

import (
	"crypto/tls"
	"errors"
	"log/slog"

	"github.com/spf13/pflag"

	"github.com/logdist/logdist/internal/tlsconf"
)

// TLSClient is the TLS flags of a command that connects (logsend,
// logbench): --tls, --tls-ca, --tls-cert, --tls-key, --tls-server-name.
type TLSClient struct {
	on                        bool
	ca, cert, key, serverName string
}

// AddTLSClient adds the client TLS flags to fs; peer names what is dialled
// ("logdist", "logdist or an analyzer").
func AddTLSClient(fs *pflag.FlagSet, peer string) *TLSClient {
	t := &TLSClient{}
	fs.BoolVar(&t.on, "tls", false, "connect to "+peer+" over TLS (implied by --tls-ca and --tls-cert), verifying it against the system's roots unless --tls-ca")
	fs.StringVar(&t.ca, "tls-ca", "", "PEM CA certificates the server's certificate must chain to")
	fs.StringVar(&t.cert, "tls-cert", "", "PEM client certificate to present (mTLS); its identity is the agent's")
	fs.StringVar(&t.key, "tls-key", "", "PEM private key of --tls-cert")
	fs.StringVar(&t.serverName, "tls-server-name", "", "name the server's certificate must have (default: the host of the address)")
	return t
}

// Config returns the TLS configuration the flags ask for, or nil for
// plaintext.
func (t *TLSClient) Config(log *slog.Logger) (*tls.Config, error) {
	if !t.on && t.ca == "" && t.cert == "" && t.key == "" && t.serverName == "" {
		return nil, nil
	}
	c, err := tlsconf.NewClient(tlsconf.Files{CA: t.ca, Cert: t.cert, Key: t.key, ServerName: t.serverName}, log)
	if err != nil {
		return nil, err
	}
	return c.Get(), nil
}

// TLSServer is the TLS flags of a command that listens (analyzerd):
// --tls-cert, --tls-key, --tls-client-ca.
type TLSServer struct {
	cert, key, clientCA string
}

// AddTLSServer adds the server TLS flags to fs.
func AddTLSServer(fs *pflag.FlagSet) *TLSServer {
	t := &TLSServer{}
	fs.StringVar(&t.cert, "tls-cert", "", "serve TLS (1.2 or later) with this PEM certificate (chain); reloaded when the file changes")
	fs.StringVar(&t.key, "tls-key", "", "PEM private key of --tls-cert")
	fs.StringVar(&t.clientCA, "tls-client-ca", "", "PEM CA certificates client certificates must chain to (mTLS: a client without one is refused)")
	return t
}

// Config returns the reloadable TLS configuration the flags ask for, or
// nil for plaintext.
func (t *TLSServer) Config(log *slog.Logger) (*tlsconf.Config, error) {
	if t.cert == "" && t.key == "" && t.clientCA == "" {
		return nil, nil
	}
	if t.cert == "" || t.key == "" {
		return nil, errors.New("--tls-cert and --tls-key go together (and --tls-client-ca needs them)")
	}
	return tlsconf.NewServer(tlsconf.Files{Cert: t.cert, Key: t.key, CA: t.clientCA}, log)
}
