// Package syslog parses one syslog datagram (or one TCP syslog frame) into
// a Message without allocating: RFC 5424, RFC 3164 (BSD) and the common
// real-world deviations from both. It is the parser behind logdist's UDP
// and TCP syslog ingest; it knows nothing about sockets or batching.
//
// Parse never fails and never panics. Every input gets one of three
// formats, decided by these rules, in order:
//
//  1. Trailing '\n', '\r' and NUL bytes are trimmed (all of them); nothing
//     else is ever trimmed or rewritten. Bytes are not checked for UTF-8:
//     invalid UTF-8 and embedded NULs are carried through as they are.
//  2. PRI is "<" 1-3 digits ">" with a value of 0-191 and no leading zero
//     ("<0>" is fine, "<013>" is not). facility = PRI/8, severity = PRI%8.
//     An input that starts with '<' but has no valid PRI (">191", leading
//     zeros, non-digits, more than three digits, missing '>') is Unparsed.
//  3. After a valid PRI, a version (1-3 digits, not starting with 0) and a
//     space announce RFC 5424. If the header that follows (TIMESTAMP
//     HOSTNAME APP-NAME PROCID MSGID, each "-" or a run of bytes other than
//     space and ASCII controls) is well formed the result is RFC5424;
//     otherwise the input is read as RFC 3164 from just after the PRI.
//  4. Any other input with a valid PRI is RFC3164 — RFC 3164 section 4.3
//     makes every such packet a valid message. Without a recognisable
//     timestamp the whole rest after the PRI is the Body (no hostname, no
//     tag), as a relay would treat it (RFC 3164 section 4.3.2).
//  5. An input without PRI is tried as RFC 5424 ("1 " and a well-formed
//     header) and then as RFC 3164, which without PRI must start with a
//     recognisable timestamp (possibly after Cisco counters). A hit gets
//     PRI 13 (user.notice), the value RFC 3164 section 4.3.3 tells relays
//     to assign. Anything else is Unparsed.
//  6. Unparsed: Body is the whole (trimmed) input, Severity 5 (notice),
//     Facility 1 (user), Timestamp 0, every other field empty. An empty or
//     all-newline/NUL datagram is Unparsed with an empty Body; it is the
//     caller's choice to drop it.
//
// # RFC 5424
//
// "-" (NILVALUE) in any header field leaves the field empty. TIMESTAMP is
// RFC 3339 with 'T' (or 't'), any number of fraction digits (RFC 5424
// allows 6; the first 9 are kept, to the nanosecond), and 'Z' or ±hh:mm
// (±hhmm is accepted too; without an offset the time is read in
// Config.Location). A date that does not exist (Feb 30, month 13) makes
// the header malformed. Field lengths (255/48/128/32) are not enforced and bytes
// above 126 are accepted in header fields, so UTF-8 hostnames survive.
// STRUCTURED-DATA is "-" or one or more [SD-ID PARAM="VALUE" ...] elements;
// in values the escapes \" \\ \] are unescaped and any other backslash is
// kept as is (RFC 5424 section 6.3.3). Malformed structured data (or a
// message that omits it) keeps the header fields and yields no SD
// attributes; the Body then starts where structured data was expected, so
// no byte is lost. A UTF-8 BOM at the start of MSG is removed.
//
// # RFC 3164
//
// After the PRI (and any spaces) the parser accepts, in order, with any
// run of spaces between the parts:
//   - Cisco IOS prefixes: up to two "NNN: " counters (message counter and
//     service sequence number, also the empty ": " of a disabled counter),
//     and an origin hostname "name: " — only when a timestamp follows.
//   - A '*' or '.' in front of the timestamp (Cisco: clock not
//     authoritative / not in sync) is skipped.
//   - TIMESTAMP: "Mmm dd hh:mm:ss" (month name in any case; day space- or
//     zero-padded, or a bare single digit), optionally "Mmm dd yyyy
//     hh:mm:ss", optionally with ".fraction" (kept to the ns) and, in Cisco
//     messages (after a counter, an origin hostname, '*' or '.'), a
//     time-zone abbreviation followed by ':' (" UTC:"; only UTC and GMT
//     change the reading, others are ignored). Or an RFC 3339 timestamp as
//     rsyslog forwards them (without an offset it is read in
//     Config.Location). A BSD timestamp without a year is read in
//     Config.Location and gets the year that puts it at most 31 days after
//     Config.Now and at most 334 days before it (a December message read
//     in January belongs to the previous year, a January message read in
//     late December to the next; Feb 29 in a year without one becomes
//     Mar 1). A timestamp followed by ':' (Cisco) is followed by no
//     hostname. A timestamp int64 nanoseconds cannot hold gives 0.
//   - HOSTNAME: the next space-separated word (a name with or without a
//     domain, an IPv4 or IPv6 address), unless it ends with ':' or contains
//     '[' — then the sender left the hostname out (as local-socket senders
//     do) and the word is the tag — or it holds a byte outside printable
//     ASCII, or it is the last word: then it is message text. A lone "-"
//     is read as no hostname (RFC 5424's NILVALUE, which some senders use
//     here too). A lone ": " after the hostname (Cisco ASA) is skipped when
//     a tag follows it.
//   - TAG: "app[pid]: " or "app: " followed by at least one more byte.
//     App is the word before '[' or ':' (printable ASCII, as in RFC 3164),
//     ProcID the text between the brackets (no brackets, spaces or control
//     characters; empty brackets give no ProcID). A word that is
//     not shaped like that is not a tag: App stays empty and the word
//     starts the Body. The one space after the tag is dropped; the rest is
//     the Body.
//
// # Attributes
//
// Message.Attrs holds, in this order: "procid" (when ProcID is not empty,
// both formats), "msgid" (when MsgID is not empty, RFC 5424 only), then
// one attribute per RFC 5424 SD-PARAM with the key "SD-ID.PARAM-NAME" (for
// example "timeQuality.tzKnown") and the unescaped value, in the order they
// appear; repeated keys are all kept.
//
// # Memory
//
// Byte slices in a Message alias the input or the Parser's scratch buffer
// (attribute keys, unescaped values) and stay valid until the next Parse
// call on the same Parser, or until the input is modified. A Parser is not
// safe for concurrent use; use one per event loop. Once its scratch buffer
// and attribute slice have grown to the largest message seen, Parse
// allocates nothing.
package syslog
