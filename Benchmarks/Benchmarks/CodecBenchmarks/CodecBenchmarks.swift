// Wire-format microbenchmarks for MQTTCore: decoding and encoding the PUBLISH that dominates the
// databus traffic, a licence-plate detection of 600 bytes (fixed header included) sent at QoS 1.
//
// Every benchmark runs 1,000 operations per sample (`scalingFactor: .kilo`) and the figures
// shown are per operation: wall-clock time per decode or encode, and mallocs per decode or encode
// (counted by the malloc interposer of ordo-one/benchmark). `.cpuTotal` is left out: on these
// Linux machines it has a 10 ms resolution, so per operation it reads 0.

import Benchmark
import MQTTCore
import NIOCore

/// The size of a whole detection PUBLISH on the wire, fixed header included.
let packetSize = 600
let topicName = "lprserver/cameras/17/detection"

/// Properties a 5.0 publisher of detections would realistically set.
let detectionProperties: Properties = [
    .payloadFormatIndicator(1),
    .messageExpiryInterval(3_600),
    .contentType("application/json"),
]

/// A JSON detection padded so that the whole packet is exactly `packetSize` bytes for `version`.
func detectionPublish(version: MQTTProtocolVersion, properties: Properties = []) -> PublishPacket {
    var packet = PublishPacket(
        topicName: topicName,
        payload: ByteBuffer(),
        qos: .atLeastOnce,
        packetIdentifier: 4_242,
        properties: properties
    )
    // Empty payload: 1 byte of type and flags + 1 byte of remaining length + the body.
    let bodyWithoutPayload = try! MQTTPacket.publish(packet).encodedSize(version: version) - 2
    // With the payload the remaining length takes 2 bytes (128...16,383).
    let payloadSize = packetSize - 1 - 2 - bodyWithoutPayload
    let json = """
        {"camera":17,"site":"north-gate","timestamp":"2025-11-21T08:33:12.345Z","plate":"AB123CD",\
        "country":"IT","confidence":0.947,"bbox":{"x":412,"y":288,"w":164,"h":42},\
        "vehicle":{"type":"car","color":"white","make":"Fiat","model":"Panda"},"lane":2,\
        "direction":"in","speedKmh":37.5,"image":"/snapshots/17/20251121T083312345.jpg",\
        "ocr":{"engine":"lpr-4.2","candidates":["AB123CD","AB128CD","A8123CD"]},"pad":"
        """
    let padding = payloadSize - json.utf8.count - 2  // the closing `"}`
    precondition(padding >= 0, "detection JSON too long for a \(packetSize)-byte packet")
    packet.payload = ByteBuffer(string: json + String(repeating: "x", count: padding) + "\"}")
    let total = try! MQTTPacket.publish(packet).encodedSize(version: version)
    precondition(total == packetSize, "PUBLISH is \(total) bytes, expected \(packetSize)")
    return packet
}

func encoded(_ packet: PublishPacket, version: MQTTProtocolVersion) -> ByteBuffer {
    var buffer = ByteBuffer()
    try! MQTTPacket.publish(packet).write(to: &buffer, version: version)
    precondition(buffer.readableBytes == packetSize)
    // Sanity check, outside the measurements: the bytes decode back to the same packet.
    var check = buffer
    let decoded = try! MQTTPacket.read(from: &check, version: version, maximumPacketSize: packetSize)
    precondition(decoded == .publish(packet) && check.readableBytes == 0, "round trip failed for \(version)")
    return buffer
}

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .throughput, .mallocCountTotal],
        timeUnits: .nanoseconds,
        warmupIterations: 10,
        scalingFactor: .kilo,
        maxDuration: .seconds(2),
        maxIterations: 100_000
    )

    let cases: [(label: String, version: MQTTProtocolVersion, packet: PublishPacket)] = [
        ("3.1.1", .v3_1_1, detectionPublish(version: .v3_1_1)),
        ("5.0", .v5, detectionPublish(version: .v5)),
        ("5.0 + 3 properties", .v5, detectionPublish(version: .v5, properties: detectionProperties)),
    ]

    for (label, version, packet) in cases {
        let bytes = encoded(packet, version: version)

        // (1) + (4): decode, with mallocs per decoded PUBLISH. Each operation decodes from a copy
        // of the same ByteBuffer (a struct copy: moves only the copy's reader index, no CoW).
        Benchmark("Decode PUBLISH 600 B QoS 1 (\(label))") { benchmark in
            for _ in benchmark.scaledIterations {
                var input = bytes
                let decoded = try! MQTTPacket.read(from: &input, version: version, maximumPacketSize: 65_536)
                blackHole(decoded)
            }
        }

        // (2): encode into a reused ByteBuffer, cleared each time, so buffer growth is not measured.
        let message = MQTTPacket.publish(packet)
        Benchmark("Encode PUBLISH 600 B QoS 1 (\(label))") { benchmark in
            var output = ByteBufferAllocator().buffer(capacity: 1_024)
            benchmark.startMeasurement()
            for _ in benchmark.scaledIterations {
                output.clear()
                try! message.write(to: &output, version: version)
                blackHole(output.writerIndex)
            }
            benchmark.stopMeasurement()
            blackHole(output)
        }
    }
}
