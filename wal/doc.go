// Package wal is the write-ahead log of one shard. It stores opaque,
// non-empty byte records and knows nothing of what they mean. tidwall/wal
// provides the segment files; this package adds what tidwall lacks: a
// versioned, checksummed envelope, locators for reading single records back,
// and repair of a torn tail.
//
// # Contract
//
//  1. Open validates every segment, replays every record in log order with
//     its Loc, cuts off a torn tail of the last segment, and only then opens
//     the log for appending. Corruption anywhere else stops Open with a
//     *CorruptError naming the segment file and byte offset, and Open
//     modifies nothing.
//  2. Commit writes its records as one block: one tidwall entry, written with
//     one write and one fsync, plus an fsync of the directory whenever tidwall
//     created a segment file. Only then does it return, with the Loc of every
//     record; nothing must be acknowledged before.
//  3. A Commit that fails for any reason other than bad arguments fails the
//     Log for good (ErrFailed). It is never retried: after a failed write
//     tidwall's memory may no longer match the file. Recovery is Close, Open
//     (which repairs), replay.
//  4. Read returns a record by Loc, checked against its CRC, from any
//     goroutine, concurrently with Commit. ReadMany reads several, opening
//     each segment file once per run of Locs in it.
//  5. A Reader reads a log read-only, in another goroutine or process than
//     its writer, with the checks of Open: it stops without error at an
//     incomplete last block (a torn tail, or one being written), which it
//     never cuts, and resumes there on its next call.
//  6. With Options.ArchiveDir, the log's older sealed segments may live in
//     a second directory: Archive moves them there crash-safely, and every
//     reader above reads both directories as one log (archive.go). A log
//     that does not start at index 1 is refused with a *MissingError.
//
// Open, Commit and Close are called only from the goroutine that owns the
// log; one Log per directory, in one process.
//
// # On-disk format
//
// A segment file is named by tidwall as the 20-digit, zero-padded index of
// its first entry, and holds tidwall entries: a uvarint length and a payload.
// Every payload is one block; integers are little-endian:
//
//	block  := header record*
//	header := version u8 (=1) | seq u64 | count u32 | crc u32   // 17 bytes
//	record := len uvarint | crc u32 | data[len]
//
// seq equals the block's tidwall index, count is the number of records (at
// least 1), the header crc is the CRC32C (Castagnoli) of the 13 header bytes
// before it, and a record's crc is the CRC32C of its data. A block is valid
// only if its header checksum, version, seq and count are right and exactly
// count records with valid checksums fill it. Records are never empty, so a
// run of zero bytes never parses as a valid record.
//
// # Locators
//
// A Loc is segmentFirstIndex<<24 | offset, where offset is the byte offset of
// the record's len uvarint in the segment file, counting tidwall's own length
// prefix of the block. tidwall starts a new segment once the tail reaches
// SegmentBytes, so offsets stay below SegmentBytes + BlockBytesMax, which
// Options.Validate bounds by 1<<24; segment first indexes stay below 1<<40.
// Commit computes Locs by mirroring tidwall's cycling rule: a tail already
// over SegmentBytes is cycled before a write, a tail that reaches
// SegmentBytes after a write is cycled at once.
//
// # Open and repair
//
// Segments must start at index 1 and be contiguous: each starts at the index
// after the last block of the one before, the archive's first, then the
// live directory's. Leftover tidwall .START or .END
// files are corruption, as this package never truncates through tidwall.
//
// In every segment but the last, any bad block is corruption. In the last
// segment the first bad block, at offset X, is a torn tail when
//
//   - its tidwall length frame runs past the end of the file, or
//   - its frame ends exactly at the end of the file, or
//   - every byte from X to the end of the file is zero
//
// and its header is not intact-but-wrong: a header with a valid checksum but
// an unknown version, a wrong seq or a zero count was written that way and is
// corruption, never a tear. A bad block followed by more data that is not all
// zeros is corruption too. A torn tail is cut off: the file is truncated to
// X, then it and the directory are fsynced, and Report says so.
//
// What Open cannot see: a deleted last segment, or one whose creation never
// became durable, looks like a log that ended one segment earlier, so Open
// succeeds with the records before it. A length prefix of the last block
// damaged to a larger value makes the block run past the end of the file,
// which looks like a torn write: that block is cut off.
//
// # Memory
//
// tidwall keeps the whole tail segment in RAM; Commit keeps a block buffer
// and tidwall a batch buffer, each up to BlockBytesMax. With the defaults a
// shard holds at most about 16 MiB, typically the size of its tail segment
// plus its largest recent block twice.
package wal
