package wal

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
)

// On-disk format of a block, the payload of one tidwall entry. See doc.go.
const (
	// formatVersion is the first byte of every block. A block with another
	// version but a valid header checksum was written by other software: Open
	// refuses it and never repairs it away.
	formatVersion = 1

	// headerBytes is the block header: version u8 | seq u64 | count u32 | crc u32.
	headerBytes = 1 + 8 + 4 + 4

	// headerCRCOffset is where the header checksum starts; it covers the bytes before it.
	headerCRCOffset = headerBytes - 4

	// recordCRCBytes is the size of a record's CRC32C, stored after its length.
	recordCRCBytes = 4

	// recordBytesMin is the smallest record frame: a one-byte length, the
	// checksum and one data byte. Records are never empty (see errEmptyRecord).
	recordBytesMin = 1 + recordCRCBytes + 1

	// blockBytesMin is the smallest valid block: a header and one record.
	blockBytesMin = headerBytes + recordBytesMin
)

// castagnoli is the CRC32C table; crc32 uses the CPU's CRC32 instruction for it.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// uvarintBytes returns how many bytes binary.AppendUvarint uses for x.
func uvarintBytes(x uint64) int {
	n := 1
	for x >= 0x80 {
		x >>= 7
		n++
	}
	return n
}

// blockBytes returns the encoded size of a block holding recs.
func blockBytes(recs [][]byte) int {
	n := headerBytes
	for _, r := range recs {
		n += uvarintBytes(uint64(len(r))) + recordCRCBytes + len(r)
	}
	return n
}

// appendBlock appends the block carrying recs with sequence seq to dst. If
// offs is not nil, offs[i] receives the offset of record i from the start of
// the block, which is where its length uvarint begins.
func appendBlock(dst []byte, seq uint64, recs [][]byte, offs []uint64) []byte {
	start := len(dst)
	dst = append(dst, formatVersion)
	dst = binary.LittleEndian.AppendUint64(dst, seq)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(recs)))
	dst = binary.LittleEndian.AppendUint32(dst, crc32.Checksum(dst[start:start+headerCRCOffset], castagnoli))
	for i, r := range recs {
		if offs != nil {
			offs[i] = uint64(len(dst) - start)
		}
		dst = binary.AppendUvarint(dst, uint64(len(r)))
		dst = binary.LittleEndian.AppendUint32(dst, crc32.Checksum(r, castagnoli))
		dst = append(dst, r...)
	}
	return dst
}

// checkHeader validates the block header at the start of b, which must carry
// sequence seq, and returns the record count. On failure it returns a reason;
// intact then reports that the header checksum was valid, so the fault is in
// what was written and cannot come from a torn write.
func checkHeader(b []byte, seq uint64) (count uint32, reason string, intact bool) {
	if len(b) < headerBytes {
		return 0, "short block header", false
	}
	sum := binary.LittleEndian.Uint32(b[headerCRCOffset:])
	if crc32.Checksum(b[:headerCRCOffset], castagnoli) != sum {
		return 0, "header checksum mismatch", false
	}
	if v := b[0]; v != formatVersion {
		return 0, fmt.Sprintf("unknown format version %d", v), true
	}
	if got := binary.LittleEndian.Uint64(b[1:]); got != seq {
		return 0, fmt.Sprintf("block sequence %d, want %d", got, seq), true
	}
	count = binary.LittleEndian.Uint32(b[9:])
	if count == 0 {
		return 0, "block holds no records", true
	}
	return count, "", true
}

// checkBlock validates block b, which must carry sequence seq. It returns ""
// if b is valid; otherwise a reason, and whether the fault is definite: the
// header checksum is valid but its content is wrong, which no torn write
// produces.
func checkBlock(b []byte, seq uint64) (reason string, definite bool) {
	count, reason, intact := checkHeader(b, seq)
	if reason != "" {
		return reason, intact
	}
	pos := headerBytes
	for i := uint32(0); i < count; i++ {
		n, vn := binary.Uvarint(b[pos:])
		if vn <= 0 {
			return fmt.Sprintf("record %d: bad length", i), false
		}
		if n == 0 {
			return fmt.Sprintf("record %d: zero length", i), false
		}
		if vn != uvarintBytes(n) {
			return fmt.Sprintf("record %d: non-canonical length", i), false
		}
		pos += vn
		if uint64(len(b)-pos) < recordCRCBytes || n > uint64(len(b)-pos-recordCRCBytes) {
			return fmt.Sprintf("record %d: runs past end of block", i), false
		}
		data := b[pos+recordCRCBytes : pos+recordCRCBytes+int(n)]
		if crc32.Checksum(data, castagnoli) != binary.LittleEndian.Uint32(b[pos:]) {
			return fmt.Sprintf("record %d: checksum mismatch", i), false
		}
		pos += recordCRCBytes + int(n)
	}
	if pos != len(b) {
		return fmt.Sprintf("%d bytes after record %d", len(b)-pos, count-1), false
	}
	return "", false
}

// nextRecord returns the data of the record that starts at b[pos] and the
// position after it. b must be a block that checkBlock accepted.
func nextRecord(b []byte, pos int) (data []byte, next int) {
	n, vn := binary.Uvarint(b[pos:])
	start := pos + vn + recordCRCBytes
	end := start + int(n)
	return b[start:end], end
}
