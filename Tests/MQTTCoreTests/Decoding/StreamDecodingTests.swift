import NIOCore
import NIOEmbedded
import NIOTestUtils
import Testing

@testable import MQTTCore

@Suite("Streams split at any byte")
struct StreamDecodingTests {
    @Test("the decoder yields the same packets however the stream is split", arguments: [MQTTProtocolVersion.v3_1_1, .v5])
    func verifier(version: MQTTProtocolVersion) throws {
        let pairs = try SamplePackets.all(for: version).map { packet in (try packet.encoded(version), [packet]) }
        try ByteToMessageDecoderVerifier.verifyDecoder(inputOutputPairs: pairs) {
            MQTTPacketDecoder(version: version)
        }
    }

    @Test("a 600-byte PUBLISH fed one byte at a time decodes exactly once, at the last byte")
    func dripFeed() throws {
        let packet = MQTTPacket.publish(
            PublishPacket(
                topicName: "lprserver/cameras/3/detection",
                payload: ByteBuffer(repeating: 0x7A, count: 560),
                qos: .atLeastOnce,
                packetIdentifier: 4
            )
        )
        let bytes = Array(try packet.encoded(.v5).readableBytesView)
        var decoder = MQTTPacketDecoder(version: .v5)
        var buffer = ByteBuffer()
        for (index, byte) in bytes.enumerated() {
            buffer.writeInteger(byte)
            let result = try decoder.decode(buffer: &buffer)
            if index < bytes.count - 1 {
                #expect(result == nil, "decoded early at byte \(index)")
            } else {
                #expect(result == packet)
            }
        }
        #expect(buffer.readableBytes == 0)
    }

    @Test("decoding errors surface through a channel pipeline")
    func pipelineError() throws {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(MQTTPacketDecoder(version: .v5, maximumPacketSize: 64)))
        let oversized = try MQTTPacket.publish(PublishPacket(topicName: "t", payload: ByteBuffer(repeating: 1, count: 100))).encoded(.v5)
        let error = #expect(throws: MQTTDecodingError.self) { try channel.writeInbound(oversized) }
        #expect(error?.reasonCode == .packetTooLarge)
        _ = try? channel.finish()
    }

    @Test("encoder and decoder work as channel handlers")
    func pipelineRoundTrip() throws {
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(MQTTPacketDecoder(version: .v3_1_1)))
        try channel.pipeline.syncOperations.addHandler(MessageToByteHandler(MQTTPacketEncoder(version: .v3_1_1)))
        let packets = SamplePackets.all(for: .v3_1_1)
        for packet in packets { try channel.writeOutbound(packet) }
        while let bytes = try channel.readOutbound(as: ByteBuffer.self) { try channel.writeInbound(bytes) }
        var received: [MQTTPacket] = []
        while let packet = try channel.readInbound(as: MQTTPacket.self) { received.append(packet) }
        #expect(received == packets)
        #expect(try channel.finish().isClean)
    }
}
