// Fuzz targets for every decoder of bytes from outside (STYLE.md), shared by the libFuzzer entry
// points (clang builds) and the randomized gtest (every build). A target takes any bytes; it
// must not crash, leak or break an invariant of the decoder it drives. A broken invariant prints
// what broke and the input in hex, then aborts, so either driver reports it as a crash.
// The targets keep no state between inputs except a shared, lazily created buffer pool; they
// are not meant to run on several threads at once.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace sluice::fuzz {

// DecodeFrameHeader on the first 24 bytes; byte 24, when present, picks max_frame_size.
void FuzzFrameHeader(const uint8_t* data, size_t size);

// The FrameReader receive state machine. Bytes 0-7 configure the run (chunking seed, max frame
// size, receive pool cap, how often whole provided segments are used, how long the consumer
// holds payloads); the rest is the received stream, fed in pseudo-random chunks through
// PrepareTarget or PrepareTargets (scatter) and OnReceived, and through OnSegment. Every frame
// must come out exactly as a plain parse of the stream sees it, errors at the same place, and
// every segment must go back to the pool.
void FuzzFrameReader(const uint8_t* data, size_t size);

// The handshake messages. Byte 0 picks the decoder (CheckHello, StatusFromErrorFrame, the
// HelloAck check of the client) and where the payload starts inside its segment; the rest is
// the payload. FlatBuffers verification must reject whatever is not a well-formed message.
// Payloads start at any offset, as they do in a receive segment (net/ copies a misaligned one
// before FlatBuffers reads it in place).
void FuzzHandshake(const uint8_t* data, size_t size);

// DecodeEvent (shuffle/event.h) on the whole input. It must accept exactly the well-formed
// events (a plain reading of the format decides) and name what is wrong with the others; what it
// accepts encodes back to the same bytes, the reserved ones as zero.
void FuzzEvent(const uint8_t* data, size_t size);

// ShuffleDescriptor::Parse (shuffle/shuffle_service.h) on the whole input: a descriptor or an
// error that says so; a parsed descriptor comes back unchanged through Serialize and Parse.
void FuzzShuffleDescriptor(const uint8_t* data, size_t size);

// RecordDeserializer (shuffle/record_format.h). Byte 0 picks the mode, max_record_size and how
// the stream is split into buffers; bytes 1-3 seed the splitting. Raw mode: the rest is the
// received stream; every record must come out as a plain parse sees it, as soon as its last
// buffer is in, and a malformed or too large length must fail exactly when its bytes are in.
// Records mode: the rest describes a list of records, encoded back to back with EncodeVarint;
// however the encoding is split, exactly those records come out, in order.
void FuzzRecordDeserializer(const uint8_t* data, size_t size);

// The `net` shuffle protocol (shuffle/net_messages.h). Byte 0 picks the decoder: DecodeControl
// on the rest, placed at any offset in its buffer, or DecodeBufferResponse on the frame header in
// the next 24 bytes. Errors name what was wrong; an accepted control message survives encoding
// and decoding again; a BufferResponse is accepted exactly when its data type is known and it
// carries bytes.
void FuzzNetShuffle(const uint8_t* data, size_t size);

// The readers of other tools' output (tools/tool_output.h). Byte 0 picks the reader: 'R',
// ParseRedisBenchmarkCsv; otherwise even, ParseSockperfOutput (and StripEscapes); odd,
// ParseIperf3Json; the rest is the tool's output.
// Either gives figures that are finite and in range, or an error of the documented kind that
// names the tool; StripEscapes leaves no ESC byte and changes nothing the second time.
void FuzzToolOutput(const uint8_t* data, size_t size);

// ParseSnapshot (statestore/snapshot_format.h) on the whole input: either an error (DataLoss,
// and then no callback ran) or a snapshot that SnapshotWriter writes back to the same bytes.
void FuzzStateSnapshot(const uint8_t* data, size_t size);
void FuzzCheckpointMetadata(const uint8_t* data, size_t size);

// RespParser (statestore/resp.h) with small limits. Byte 0 seeds how the rest, the received
// stream, is cut into chunks. Fed in those chunks, the parser must give exactly the commands, and
// the error (message and stream offset), of a parse of the whole stream at once; an error is an
// InvalidArgument at an offset inside the stream; every command, encoded again as a request,
// parses back to itself.
void FuzzResp(const uint8_t* data, size_t size);

struct Target {
  const char* name;  // "frame_header": libFuzzer binary fuzz_<name>, corpus dir <name>
  void (*run)(const uint8_t* data, size_t size);
  // Well-formed inputs to start from.
  std::vector<std::string> (*seeds)();
};
const std::vector<Target>& Targets();

// Lowercase hex, for reproducers.
std::string Hex(const uint8_t* data, size_t size);

// The native query protocol (statestore/query_protocol.h). Byte 0 picks the decoder (even:
// DecodeQueryRequest, odd: DecodeQueryResponse); the rest is the message, one byte into the
// input so that it is misaligned as in a receive segment. Whatever is accepted encodes and
// decodes again to the same; a request's continuation decodes to a scan position that encodes
// back to it, or is refused.
void FuzzQueryProtocol(const uint8_t* data, size_t size);

}  // namespace sluice::fuzz
