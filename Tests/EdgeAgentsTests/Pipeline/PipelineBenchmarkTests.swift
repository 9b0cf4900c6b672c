import DatabusTestSupport
import EdgeAgents
import Foundation
import Logging
import MQTTCore
import Testing

/// One 100 KB frame, the same for every frame id.
private struct FixedFrame: FrameSource {
    let jpeg: [UInt8]
    func frame(_ id: Int) async -> [UInt8]? { jpeg }
}

/// Frames per second `databus pipeline` publishes with 100 KB frames; prints figures, asserts
/// only that every frame was published (no timed assertion).
@Suite("Pipeline throughput (benchmark)", .serialized, .timeLimit(.minutes(5)))
struct PipelineBenchmarkTests {
    static let frames = 2000

    @Test("100 KB frames at QoS 0 and 1: frames/s printed", arguments: BrokerKind.allCases, [QoS.atMostOnce, .atLeastOnce])
    func throughput(broker kind: BrokerKind, qos: QoS) async throws {
        var generator = SystemRandomNumberGenerator()
        let jpeg = [0xFF, 0xD8] + (0..<(100 * 1024 - 4)).map { _ in UInt8.random(in: 0...255, using: &generator) } + [0xFF, 0xD9]
        let line =
            #"{"objects":[{"detection":{"confidence":0.9,"label":"car","label_id":2},"x":1,"y":2,"w":3,"h":4}],"resolution":{"height":480,"width":640},"timestamp":2}"#
        try await kind.with { broker in
            let publisher = try PipelinePublisher(
                configuration: PipelineConfiguration(publishFrame: true, qos: qos),
                options: PipelinePublisher.Options(host: "127.0.0.1", port: broker.port),
                logger: Logger(label: "bench", factory: { _ in SwiftLogNoOpLogHandler() })
            )
            let (lines, input) = AsyncStream<String>.makeStream()
            for _ in 0..<Self.frames { input.yield(line) }
            input.finish()
            let start = ContinuousClock.now
            let statistics = try await publisher.run(metadata: lines, frames: FixedFrame(jpeg: jpeg))
            let elapsed = ContinuousClock.now - start
            let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
            #expect(statistics.published == Self.frames)
            let rate = Double(Self.frames) / seconds
            print(
                String(
                    format: "pipeline benchmark: %@, QoS %d, 100 KB frames: %d frames in %.2f s = %.0f frames/s (%.1f MB/s of JPEG)",
                    kind.testDescription,
                    Int(qos.rawValue),
                    Self.frames,
                    seconds,
                    rate,
                    rate * 100 / 1024
                )
            )
        }
    }
}
