package frame

import (
	"fmt"
	"testing"
)

func BenchmarkAppendHeader(b *testing.B) {
	buf := make([]byte, 0, HeaderSize)
	b.ReportAllocs()
	b.SetBytes(HeaderSize)
	for b.Loop() {
		buf = AppendHeader(buf[:0], TypeData, FlagZstd, 12345, 100, 9000, 21000, 0xCAFEBABE)
	}
}

func BenchmarkParseHeader(b *testing.B) {
	lim := DefaultLimits()
	buf := AppendHeader(nil, TypeData, FlagZstd, 12345, 100, 9000, 21000, 0xCAFEBABE)
	b.ReportAllocs()
	b.SetBytes(HeaderSize)
	var n uint32
	for b.Loop() {
		h, err := ParseHeader(buf, &lim)
		if err != nil {
			b.Fatal(err)
		}
		n += h.Count()
	}
	_ = n
}

func BenchmarkChecksum(b *testing.B) {
	for _, size := range []int{256, 4 << 10, 64 << 10} {
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			p := make([]byte, size)
			b.ReportAllocs()
			b.SetBytes(int64(size))
			for b.Loop() {
				_ = Checksum(p)
			}
		})
	}
}
