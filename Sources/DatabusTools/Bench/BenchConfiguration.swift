import MQTTCore

/// What `databus bench` runs: a scenario, its clients and the load they offer.
public struct BenchConfiguration: Sendable {
    public enum Scenario: String, Sendable, CaseIterable {
        /// N publishers on `lprserver/cameras/{i}/detection` → subscribers on `lprserver/cameras/+/detection`.
        case fanin
        /// One publisher → M subscribers on one topic.
        case fanout
        /// N publisher/subscriber pairs, each pair on a topic of its own.
        case pairs
        /// N idle connections held open (the broker's RSS per connection with a PID).
        case conns
        /// N idle connections subscribed to one topic at QoS 1, held for the duration (long
        /// enough for a broker to park them), then one message to all of them: how long each
        /// copy takes to arrive.
        case wake
        /// The LPR server's ingest path (reserved until the LPR server lands).
        case ingest
    }

    public var scenario: Scenario = .fanin
    public var host = "127.0.0.1"
    public var port = 1883
    public var version: MQTTProtocolVersion = .v3_1_1
    public var qos: QoS = .atMostOnce
    /// Payload bytes per message (at least 20: send time, sequence number, publisher).
    public var size = 600
    /// Messages per second per publisher; 0 sends as fast as the in-flight window allows.
    public var rate = 0
    /// QoS 1/2 messages a publisher keeps unacknowledged at most.
    public var inflight = 32
    public var duration: Duration = .seconds(10)
    public var publishers = 8
    public var subscribers = 1
    /// For `conns` and `wake`: connections to open and hold.
    public var connections = 1_000
    /// For `conns`: the keep alive the idle connections ask for, in seconds (cameras use 60;
    /// the generator answers none of them within a run shorter than 1.5 times it).
    public var connectionKeepAlive: UInt16 = 60
    /// The broker's process, for its CPU and memory.
    public var brokerPID: Int32?
    public var tls: BenchTLS?
    /// How long to wait after the last send for messages still on their way.
    public var drainTimeout: Duration = .seconds(5)
    /// A label for the report (e.g. "databus", "mosquitto").
    public var label = "broker"

    public init() {}

    /// The smallest payload that carries the header the subscribers read.
    public static let minimumSize = BenchPayload.headerSize
}

/// TLS for the generator's connections.
public struct BenchTLS: Sendable {
    public var caFile: String?
    public var certificateFile: String?
    public var keyFile: String?
    /// Skip host name verification (the certificate chain is still checked).
    public var insecure = false

    public init(caFile: String? = nil, certificateFile: String? = nil, keyFile: String? = nil, insecure: Bool = false) {
        self.caFile = caFile
        self.certificateFile = certificateFile
        self.keyFile = keyFile
        self.insecure = insecure
    }
}

/// The first bytes of every payload: when it was sent, its number, and who sent it.
enum BenchPayload {
    static let headerSize = 20

    static func write(sentAt: UInt64, sequence: UInt64, publisher: UInt32, into pointer: UnsafeMutableRawBufferPointer) {
        pointer.storeBytes(of: sentAt.littleEndian, toByteOffset: 0, as: UInt64.self)
        pointer.storeBytes(of: sequence.littleEndian, toByteOffset: 8, as: UInt64.self)
        pointer.storeBytes(of: publisher.littleEndian, toByteOffset: 16, as: UInt32.self)
    }

    static func read(_ bytes: UnsafeRawBufferPointer) -> (sentAt: UInt64, sequence: UInt64, publisher: UInt32)? {
        guard bytes.count >= headerSize else { return nil }
        return (
            UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: 0, as: UInt64.self)),
            UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: 8, as: UInt64.self)),
            UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: 16, as: UInt32.self))
        )
    }
}
