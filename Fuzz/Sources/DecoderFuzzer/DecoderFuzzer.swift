// libFuzzer target for the MQTTCore wire format.
//
// One input is a mode byte followed by a byte stream:
//
//   bits 0-1  who decodes: 0 or 3 = a server (version nil until CONNECT, then the CONNECT's
//             version), 1 = a client on MQTT 3.1.1, 2 = a client on MQTT 5.0
//   bits 2-4  the maximum packet size, an index into `maximumPacketSizes`
//   bits 5-7  how the stream reaches MQTTPacketDecoder: 0 = one byte at a time,
//             k = in two parts split after count * k / 8 bytes
//
// The stream is decoded with `MQTTPacket.read` until it returns nil or throws (errors are
// expected). Every packet that decodes must survive a round trip: written with
// `write(to:version:)` (a CONNECT in its own protocol version), it must decode again to an
// equal packet, `encodedSize` must match the bytes written, and writing the packet decoded the
// second time must give the same bytes. The same stream then goes through MQTTPacketDecoder (in
// NIOSingleStepByteToMessageProcessor, as a channel uses it), split as above: it must produce
// the same packets and end with the same error. Any difference traps.
//
// Run with `DecoderFuzzer --write-seeds DIR` to write the seed corpus (valid packets of every
// kind, in every mode) instead of fuzzing.

import MQTTCore
import NIOCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// MARK: The input's mode byte

enum Side: UInt8, CaseIterable {
    case server = 0
    case client311 = 1
    case client5 = 2

    var initialVersion: MQTTProtocolVersion? {
        switch self {
        case .server: nil
        case .client311: .v3_1_1
        case .client5: .v5
        }
    }

    var name: String {
        switch self {
        case .server: "server"
        case .client311: "v311"
        case .client5: "v5"
        }
    }
}

let defaultMaximumPacketSize = maximumVariableByteInteger + 5
let maximumPacketSizes = [defaultMaximumPacketSize, 2, 8, 32, 128, 512, 4096, 65_536]

struct Mode: CustomStringConvertible {
    var side: Side
    var maximumPacketSize: Int
    /// 0 = feed the decoder one byte at a time; 1...7 = split after count * split / 8 bytes.
    var split: Int

    init(byte: UInt8) {
        side = Side(rawValue: byte & 0x03) ?? .server
        maximumPacketSize = maximumPacketSizes[Int((byte >> 2) & 0x07)]
        split = Int(byte >> 5)
    }

    static func byte(side: Side, maximumPacketSizeIndex: Int = 0, split: Int = 4) -> UInt8 {
        side.rawValue | UInt8(maximumPacketSizeIndex) << 2 | UInt8(split) << 5
    }

    var description: String {
        "side \(side.name), maximum packet size \(maximumPacketSize), " + (split == 0 ? "byte by byte" : "split \(split)/8")
    }
}

// MARK: Helpers

func hex(_ buffer: ByteBuffer) -> String {
    buffer.readableBytesView.map { byte in
        let digits = String(byte, radix: 16)
        return byte < 16 ? "0" + digits : digits
    }.joined()
}

func fail(_ message: String, mode: Mode, input: ByteBuffer) -> Never {
    fatalError("\(message)\n  mode: \(mode)\n  stream: \(hex(input))")
}

/// What decoding a whole stream gave: the packets, then how it ended.
struct Outcome: Equatable {
    var packets: [MQTTPacket] = []
    /// nil when the stream ended with an incomplete packet (or nothing).
    var error: MQTTDecodingError?
}

// MARK: The round trip

/// The version a packet is written in on a stream of `streamVersion`: a CONNECT carries its own.
func writeVersion(of packet: MQTTPacket, streamVersion: MQTTProtocolVersion?) -> MQTTProtocolVersion {
    if case .connect(let connect) = packet { return connect.protocolVersion }
    guard let streamVersion else { fatalError("a packet other than CONNECT decoded without a version") }
    return streamVersion
}

func encode(_ packet: MQTTPacket, version: MQTTProtocolVersion, what: String, mode: Mode, input: ByteBuffer) -> ByteBuffer {
    var buffer = ByteBuffer()
    do {
        try packet.write(to: &buffer, version: version)
    } catch {
        fail("\(what): a decoded packet does not encode in \(version): \(error)\n  packet: \(packet)", mode: mode, input: input)
    }
    let size: Int
    do {
        size = try packet.encodedSize(version: version)
    } catch {
        fail("\(what): encodedSize throws \(error) though write(to:) succeeded\n  packet: \(packet)", mode: mode, input: input)
    }
    if size != buffer.readableBytes {
        fail(
            "\(what): encodedSize says \(size) bytes, write(to:) wrote \(buffer.readableBytes)\n  packet: \(packet)\n  encoded: \(hex(buffer))",
            mode: mode,
            input: input
        )
    }
    return buffer
}

func checkRoundTrip(_ packet: MQTTPacket, streamVersion: MQTTProtocolVersion?, mode: Mode, input: ByteBuffer) {
    let version = writeVersion(of: packet, streamVersion: streamVersion)
    // A CONNECT is read as a server reads it, before it knows the version; the rest in the stream's version.
    let readVersion: MQTTProtocolVersion? = packet.type == .connect ? nil : version
    let encoded = encode(packet, version: version, what: "first write", mode: mode, input: input)
    var reader = encoded
    let decoded: MQTTPacket?
    do {
        decoded = try MQTTPacket.read(from: &reader, version: readVersion, maximumPacketSize: defaultMaximumPacketSize)
    } catch {
        fail(
            "round trip: the re-encoded packet does not decode: \(error)\n  packet: \(packet)\n  encoded (\(version)): \(hex(encoded))",
            mode: mode,
            input: input
        )
    }
    guard let decoded else {
        fail(
            "round trip: the re-encoded packet decodes as incomplete\n  packet: \(packet)\n  encoded (\(version)): \(hex(encoded))",
            mode: mode,
            input: input
        )
    }
    if reader.readableBytes != 0 {
        fail(
            "round trip: \(reader.readableBytes) bytes left after decoding the re-encoded packet\n  packet: \(packet)\n  encoded (\(version)): \(hex(encoded))",
            mode: mode,
            input: input
        )
    }
    if decoded != packet {
        fail(
            "round trip: the re-encoded packet decodes to a different packet\n  decoded first:  \(packet)\n  decoded again:  \(decoded)\n  encoded (\(version)): \(hex(encoded))",
            mode: mode,
            input: input
        )
    }
    let reencoded = encode(decoded, version: version, what: "second write", mode: mode, input: input)
    if reencoded != encoded {
        fail(
            "round trip: writing the packet again gives other bytes\n  packet: \(packet)\n  first:  \(hex(encoded))\n  second: \(hex(reencoded))",
            mode: mode,
            input: input
        )
    }
}

// MARK: Decoding the whole stream

func decodeWhole(_ input: ByteBuffer, mode: Mode) -> Outcome {
    var buffer = input
    var version = mode.side.initialVersion
    var outcome = Outcome()
    while true {
        let packet: MQTTPacket?
        do {
            packet = try MQTTPacket.read(from: &buffer, version: version, maximumPacketSize: mode.maximumPacketSize)
        } catch {
            outcome.error = error
            return outcome
        }
        guard let packet else { return outcome }
        // Like MQTTPacketDecoder: a server learns the version from the first CONNECT.
        if version == nil, case .connect(let connect) = packet { version = connect.protocolVersion }
        checkRoundTrip(packet, streamVersion: version, mode: mode, input: input)
        outcome.packets.append(packet)
    }
}

// MARK: Decoding in parts with MQTTPacketDecoder

func decodeInParts(_ input: ByteBuffer, mode: Mode) -> Outcome {
    let processor = NIOSingleStepByteToMessageProcessor(
        MQTTPacketDecoder(version: mode.side.initialVersion, maximumPacketSize: mode.maximumPacketSize)
    )
    var outcome = Outcome()
    let count = input.readableBytes
    var parts: [ByteBuffer] = []
    if mode.split == 0 {
        parts.reserveCapacity(count)
        for offset in 0..<count { parts.append(input.getSlice(at: input.readerIndex + offset, length: 1)!) }
    } else {
        let cut = count * mode.split / 8
        parts = [
            input.getSlice(at: input.readerIndex, length: cut)!,
            input.getSlice(at: input.readerIndex + cut, length: count - cut)!,
        ]
    }
    do {
        for part in parts {
            try processor.process(buffer: part) { outcome.packets.append($0) }
        }
        try processor.finishProcessing(seenEOF: true) { outcome.packets.append($0) }
    } catch let error as MQTTDecodingError {
        outcome.error = error
    } catch {
        fail("MQTTPacketDecoder threw an error that is not an MQTTDecodingError: \(error)", mode: mode, input: input)
    }
    return outcome
}

// MARK: libFuzzer entry points

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let data, size > 0 else { return 0 }
    let mode = Mode(byte: data[0])
    let input = ByteBuffer(bytes: UnsafeBufferPointer(start: data + 1, count: size - 1))

    let whole = decodeWhole(input, mode: mode)
    let inParts = decodeInParts(input, mode: mode)
    if whole != inParts {
        fail(
            """
            MQTTPacketDecoder fed in parts disagrees with MQTTPacket.read on the whole stream
              whole:    \(whole.packets.count) packets \(whole.packets), then \(whole.error.map { "error \($0)" } ?? "no error")
              in parts: \(inParts.packets.count) packets \(inParts.packets), then \(inParts.error.map { "error \($0)" } ?? "no error")
            """,
            mode: mode,
            input: input
        )
    }
    return 0
}

@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<CInt>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt
) -> CInt

@_cdecl("DecoderFuzzer_main")
public func fuzzerMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    if argc == 3, let flag = argv?[1], String(cString: flag) == "--write-seeds", let directory = argv?[2] {
        return writeSeeds(to: String(cString: directory))
    }
    var argc = argc
    var argv = argv
    return LLVMFuzzerRunDriver(&argc, &argv, fuzzTestOneInput)
}
