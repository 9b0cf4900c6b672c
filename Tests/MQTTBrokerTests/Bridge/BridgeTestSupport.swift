import DatabusTestSupport
import Foundation
import MQTTCore
import NIOCore
import Testing

/// Waits until a subscriber to `topic` on 127.0.0.1:`port` is given `payload` as its retained
/// message (a bridge's "1"/"0" notification, for instance).
func waitForRetained(
    port: Int,
    topic: String,
    payload: String,
    within seconds: Double = 20,
    sourceLocation: SourceLocation = #_sourceLocation
) async throws {
    let deadline = ContinuousClock.now + .seconds(seconds)
    var last = "nothing"
    while ContinuousClock.now < deadline {
        if let connection = try? await connectAccepted(port: port, "watch-\(UInt32.random(in: 0...UInt32.max))", version: .v3_1_1) {
            _ = try? await connection.subscribe(topic, qos: .atMostOnce)
            if let publish = try? await connection.receivePublish(within: 1) {
                last = "\"\(publish.payloadString)\" (retain \(publish.retain))"
                if publish.retain && publish.payloadString == payload {
                    await connection.close()
                    return
                }
            }
            await connection.close()
        }
        try await Task.sleep(for: .milliseconds(200))
    }
    throw InteropError("\(topic) on port \(port) is not \"\(payload)\" after \(seconds) s; last seen: \(last)")
}

extension CodecConnection {
    /// Answers what the broker sent as a subscriber does (PUBACK, PUBREC, PUBCOMP); returns it
    /// when it is a PUBLISH.
    func acknowledging(_ packet: MQTTPacket) async throws -> PublishPacket? {
        switch packet {
        case .publish(let publish):
            if let identifier = publish.packetIdentifier {
                try await send(
                    publish.qos == .atLeastOnce
                        ? .puback(PubAckPacket(packetIdentifier: identifier)) : .pubrec(PubRecPacket(packetIdentifier: identifier))
                )
            }
            return publish
        case .pubrel(let release):
            try await send(.pubcomp(PubCompPacket(packetIdentifier: release.packetIdentifier)))
            return nil
        default:
            return nil
        }
    }

    /// Receives PUBLISH packets, acknowledging each, until none arrives for `quiet` seconds.
    func collectPublishes(quiet: Double = 1.5) async throws -> [PublishPacket] {
        var received: [PublishPacket] = []
        while true {
            let packet: MQTTPacket
            do {
                packet = try await receive(within: quiet)
            } catch {
                return received
            }
            if let publish = try await acknowledging(packet) { received.append(publish) }
        }
    }

    /// Receives until `count` PUBLISH packets came (acknowledging each), or throws after `seconds`.
    func collectPublishes(count: Int, within seconds: Double = 15) async throws -> [PublishPacket] {
        let deadline = ContinuousClock.now + .seconds(seconds)
        var received: [PublishPacket] = []
        while received.count < count {
            let left = deadline - ContinuousClock.now
            guard left > .zero else {
                throw InteropError(
                    "\(received.count) of \(count) messages after \(seconds) s: \(received.map { "\($0.topicName)=\($0.payloadString)" })"
                )
            }
            let packet = try await receive(within: Double(left.components.seconds) + 0.1)
            if let publish = try await acknowledging(packet) { received.append(publish) }
        }
        return received
    }
}

/// A message as a test compares it: topic, payload, QoS and retain flag.
struct Seen: Hashable, CustomStringConvertible {
    let topic: String
    let payload: String
    let qos: QoS
    let retain: Bool

    init(_ topic: String, _ payload: String, qos: QoS, retain: Bool = false) {
        self.topic = topic
        self.payload = payload
        self.qos = qos
        self.retain = retain
    }

    init(_ publish: PublishPacket) {
        self.init(publish.topicName, publish.payloadString, qos: publish.qos, retain: publish.retain)
    }

    var description: String { "\(topic)=\(payload) q\(qos.rawValue)\(retain ? " r" : "")" }
}

/// Starts `body` with a `databus broker` process, stopping it however `body` ends.
func withDatabusBroker(_ configuration: String, _ body: (DatabusBrokerProcess) async throws -> Void) async throws {
    try await DatabusBrokerProcess.with(extraConfiguration: configuration, body)
}
