package spool

import (
	"bufio"
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
)

// Encryption at rest: with Config.Keys set, Append seals every record's
// body with AES-256-GCM and sets FlagSealed; every reader opens sealed
// bodies before it checks the DATA frame. What is sealed is the body (the
// packet, a dead letter's header with it); the segment and record headers
// (sequence, kind, flags, length, CRC) stay in clear, so that damage is
// still found and skipped without the key.
//
//	sealed body:
//	    0   2 key       the key's id in the key file (1-65535)
//	    2  12 nonce     random (crypto/rand), one per record
//	   14     sealed    the body encrypted, then the 16-byte GCM tag
//
// The additional data authenticated with it is the record's sequence (8
// bytes, big-endian) and kind (1 byte): a sealed body moved to another
// record, or relabelled, fails to open.

// KeySize is an AES-256 key's size in bytes.
const KeySize = 32

const (
	keyIDSize    = 2
	nonceSize    = 12
	tagSize      = 16
	sealOverhead = keyIDSize + nonceSize + tagSize
)

// Keyring is the keys of a key file, by id: the first one seals new
// records, all of them open old ones. It is read-only once made, and
// safe for concurrent use.
type Keyring struct {
	current uint16
	ids     []uint16 // in the file's order
	aeads   map[uint16]cipher.AEAD
}

// ParseKeyring reads a key file's text: one key a line as "ID HEX", ID a
// decimal 1-65535 and HEX 64 hex digits (32 bytes), blank lines and
// lines beginning with '#' ignored. The first key seals new records; the
// others only open old ones. Errors name the line. It does not check the
// file's permissions (LoadKeyring does).
func ParseKeyring(text []byte) (*Keyring, error) {
	k := &Keyring{aeads: map[uint16]cipher.AEAD{}}
	sc := bufio.NewScanner(bytes.NewReader(text))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 2 {
			return nil, fmt.Errorf("line %d: want \"ID HEX\" (a key id 1-65535 and 64 hex digits), found %d fields", n, len(f))
		}
		id, err := strconv.ParseUint(f[0], 10, 16)
		if err != nil || id == 0 {
			return nil, fmt.Errorf("line %d: key id %q: want a decimal number 1-65535", n, f[0])
		}
		if _, dup := k.aeads[uint16(id)]; dup {
			return nil, fmt.Errorf("line %d: key id %d given twice", n, id)
		}
		if len(f[1]) != 2*KeySize {
			return nil, fmt.Errorf("line %d: key %d: want %d hex digits (%d bytes), found %d characters", n, id, 2*KeySize, KeySize, len(f[1]))
		}
		key, err := hex.DecodeString(f[1])
		if err != nil {
			return nil, fmt.Errorf("line %d: key %d: not hex: %v", n, id, err)
		}
		aead, err := newAEAD(key)
		if err != nil {
			return nil, fmt.Errorf("line %d: key %d: %v", n, id, err)
		}
		if len(k.ids) == 0 {
			k.current = uint16(id)
		}
		k.ids = append(k.ids, uint16(id))
		k.aeads[uint16(id)] = aead
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(k.ids) == 0 {
		return nil, errors.New("no key in it (want lines \"ID HEX\"; logdist spool keygen prints one)")
	}
	return k, nil
}

// LoadKeyring reads the key file at path (see ParseKeyring). A file that
// its group or others may read or write is refused, as ssh refuses such
// a private key: chmod 600 it.
func LoadKeyring(path string) (*Keyring, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("key file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("key file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("key file %s: not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("key file %s: permissions %04o are too open: its group or others may use it; chmod 600 %s", path, perm, path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("key file: %w", err)
	}
	k, err := ParseKeyring(b)
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w", path, err)
	}
	return k, nil
}

func newAEAD(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// Current returns the id of the key new records are sealed with.
func (k *Keyring) Current() uint16 { return k.current }

// IDs returns the keys' ids, the current one first (the file's order).
func (k *Keyring) IDs() []uint16 { return slices.Clone(k.ids) }

// Has reports whether the keyring holds key id.
func (k *Keyring) Has(id uint16) bool {
	if k == nil {
		return false
	}
	_, ok := k.aeads[id]
	return ok
}

// KeyLine returns a new key file line for key id: "ID HEX", 32 random
// bytes from crypto/rand.
func KeyLine(id uint16) string {
	var key [KeySize]byte
	rand.Read(key[:])
	return fmt.Sprintf("%d %x", id, key[:])
}

// sealNonce fills a new record's nonce (a seam for the golden test).
var sealNonce = func(b []byte) { rand.Read(b) }

// A seal's additional data is the record's sequence and kind, as its
// header holds them (bytes 8-16): ad is that slice of the header, so
// that sealing and opening allocate nothing for it.
const adSize = 9

// appendSealed appends body sealed with the current key to dst; ad is
// the record's sequence and kind (its header's bytes 8-16).
func (k *Keyring) appendSealed(dst, ad, body []byte) []byte {
	dst = binary.BigEndian.AppendUint16(dst, k.current)
	n := len(dst)
	dst = append(dst, make([]byte, nonceSize)...)
	nonce := dst[n : n+nonceSize]
	sealNonce(nonce)
	return k.aeads[k.current].Seal(dst, nonce, body, ad)
}

// sealedKey returns the key id of a sealed body (0: too short to hold
// one).
func sealedKey(body []byte) uint16 {
	if len(body) < keyIDSize {
		return 0
	}
	return binary.BigEndian.Uint16(body)
}

// openResult is what opening a sealed body came to.
type openResult uint8

const (
	opened  openResult = iota
	noKey              // its key is not in the keyring: kept, not lost
	badSeal            // too short, or it fails authentication: damage
)

// open opens a sealed body, ad its record's sequence and kind (the
// header's bytes 8-16), appending the plaintext to dst[:0]. k may be nil
// (no keyring: noKey).
func (k *Keyring) open(dst, ad, body []byte) ([]byte, openResult, string) {
	if len(body) < sealOverhead {
		return nil, badSeal, fmt.Sprintf("sealed body of %d bytes, shorter than its key id, nonce and tag (%d)", len(body), sealOverhead)
	}
	id := sealedKey(body)
	if id == 0 {
		return nil, badSeal, "sealed with key id 0, which no key file holds"
	}
	var (
		a  cipher.AEAD
		ok bool
	)
	if k != nil {
		a, ok = k.aeads[id]
	}
	if !ok {
		return nil, noKey, fmt.Sprintf("key %d not in the key file", id)
	}
	nonce := body[keyIDSize : keyIDSize+nonceSize]
	pt, err := a.Open(dst[:0], nonce, body[keyIDSize+nonceSize:], ad)
	if err != nil {
		return nil, badSeal, fmt.Sprintf("sealed with key %d, fails authentication (altered, or moved from another record)", id)
	}
	return pt, opened, ""
}

// openBody returns rr's body, opened if sealed (into *buf, which it may
// grow), and the key id it was sealed with (0: not sealed). noKey and
// badSeal say why there is none, detail in words.
func (d *Dir) openBody(buf *[]byte, rr *rawRec) (body []byte, key uint16, res openResult, detail string) {
	if rr.flags&FlagSealed == 0 {
		return rr.body, 0, opened, ""
	}
	key = sealedKey(rr.body)
	body, res, detail = d.cfg.Keys.open(*buf, rr.ad, rr.body)
	if res == opened && cap(body) <= 4*readAhead {
		*buf = body[:0] // keep it, unless a huge record grew it
	}
	return body, key, res, detail
}

// keyRun gathers consecutive records that want the same missing key,
// to report them as one DamageKey.
type keyRun struct {
	dmg Damage
	n   int
}

// add adds record rr of segment seg, sealed with key id; a record that
// does not follow the run flushes it first.
func (k *keyRun) add(seg string, rr *rawRec, id uint16, detail string, report func(Damage)) {
	if k.n > 0 && (k.dmg.Segment != seg || k.dmg.Key != id || k.dmg.LastSeq+1 != rr.seq) {
		k.flush(report)
	}
	if k.n == 0 {
		k.dmg = Damage{Kind: DamageKey, Segment: seg, Offset: rr.off, FirstSeq: rr.seq, Key: id,
			Detail: detail + "; kept until a restart with it", Repair: "kept"}
	}
	k.dmg.LastSeq = rr.seq
	k.dmg.Length = rr.off + rr.size - k.dmg.Offset
	k.n++
}

// flush reports the run, if any.
func (k *keyRun) flush(report func(Damage)) {
	if k.n > 0 {
		dmg := k.dmg
		k.n, k.dmg = 0, Damage{}
		report(dmg)
	}
}
