import Foundation
import LPRModel
import MQTTClient
import MQTTCore
import NIOCore

/// Everything that shapes an LPR server: its broker connection, its session, and its rules.
public struct LPRServerConfiguration: Sendable {
    /// The broker connection (host, port, TLS, credentials, client id, keep alive, reconnect).
    /// The server sets what the protocol needs on top: a persistent session, manual
    /// acknowledgement (a detection is acknowledged to the broker only once stored) and its will.
    public var mqtt: MQTTClient.Configuration
    /// How long the broker keeps the server's session while it is away (one day by default):
    /// detections published meanwhile are delivered when it returns.
    public var sessionExpiry: Duration
    /// Shares the camera → server topics with other servers through `$share/{group}/...`.
    public var shareGroup: String?
    /// Who this server is among several (leases, logs); the client id by default.
    public var instanceID: String
    /// The longest batch of detections stored in one transaction.
    public var maximumBatchSize: Int
    /// How far apart plates may be and still match the watch-list (after folding OCR confusions).
    public var watchlistMaximumDistance: Int
    /// Camera health rules: staleness and limits.
    public var cameraHealth: CameraHealthRules
    /// How often `system/health`, `system/monitoring` and the checkpoint topics are published.
    public var systemInterval: Duration
    /// How often cameras are checked for silence.
    public var stalenessCheckInterval: Duration
    /// Detections older than this are purged; `nil` keeps them.
    public var retentionAge: Duration?
    /// Health history, alerts and commands older than this are purged; `nil` keeps them.
    /// Shorter than the detections' by default: health every 30 s from 100 cameras is 288,000
    /// rows a day.
    public var historyRetentionAge: Duration?
    /// At most this many detections are kept; `nil` for no limit.
    public var retentionMaximumDetections: Int?
    /// How often the retention purge runs.
    public var retentionInterval: Duration
    /// The longest a command may wait for its answer.
    public var maximumCommandTimeout: Duration

    /// - Parameters:
    ///   - mqtt: the broker connection; its client id defaults to `lprserver_v3`.
    public init(mqtt: MQTTClient.Configuration) {
        self.mqtt = mqtt
        self.sessionExpiry = .seconds(86_400)
        self.shareGroup = nil
        self.instanceID = mqtt.clientIdentifier
        self.maximumBatchSize = 1000
        self.watchlistMaximumDistance = 1
        self.cameraHealth = CameraHealthRules()
        self.systemInterval = .seconds(30)
        self.stalenessCheckInterval = .seconds(5)
        self.retentionAge = .seconds(90 * 86_400)
        self.retentionMaximumDetections = nil
        self.historyRetentionAge = .seconds(7 * 86_400)
        self.retentionInterval = .seconds(3600)
        self.maximumCommandTimeout = .seconds(120)
    }

    /// The client configuration the server connects with.
    var clientConfiguration: MQTTClient.Configuration {
        var configuration = mqtt
        configuration.protocolVersion = mqtt.protocolVersion
        configuration.cleanStart = false
        configuration.sessionExpiry = sessionExpiry
        configuration.acknowledgement = .manual
        if configuration.receiveMaximum == UInt16.max { configuration.receiveMaximum = UInt16(min(65_535, max(64, maximumBatchSize * 4))) }
        configuration.will = ConnectPacket.Will(
            topic: LPRTopic.systemStatus.name,
            payload: ByteBuffer(string: "offline"),
            qos: .atLeastOnce,
            retain: true
        )
        return configuration
    }

    /// A topic filter as this server subscribes to it: shared when ``shareGroup`` is set.
    func shared(_ filter: String) -> String {
        guard let shareGroup, !shareGroup.isEmpty else { return filter }
        return "$share/\(shareGroup)/\(filter)"
    }
}
