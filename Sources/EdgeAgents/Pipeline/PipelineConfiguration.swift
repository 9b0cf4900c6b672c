import Foundation
import LPRModel
import MQTTClient
import MQTTCore

/// The `mqtt_publisher` object of a video pipeline's configuration file, with exactly the
/// DL Streamer Pipeline Server's options and defaults.
///
/// ```json
/// {"mqtt_publisher": {"publish_frame": true, "topic": "dlstreamer_pipeline_results", "qos": 1, "protocol": 4,
///   "filter": {"type": "detection", "label_score": {"box": 0.4}},
///   "tls": {"ca_cert": "ca.crt", "client_key": "client.key", "client_cert": "client.crt"}}}
/// ```
///
/// Options we do not know are ignored (a newer pipeline's file still works); a known option
/// with a wrong value is an error naming it.
public struct PipelineConfiguration: Sendable, Hashable {
    /// Mutual TLS files of the `tls` option.
    public struct TLSFiles: Sendable, Hashable {
        public var caCertificate: String?
        public var clientKey: String?
        public var clientCertificate: String?

        public init(caCertificate: String? = nil, clientKey: String? = nil, clientCertificate: String? = nil) {
            self.caCertificate = caCertificate
            self.clientKey = clientKey
            self.clientCertificate = clientCertificate
        }
    }

    /// Publish `[metadata, base64 JPEG]` rather than the metadata alone; false by default.
    public var publishFrame: Bool
    /// `dlstreamer_pipeline_results` by default.
    public var topic: String
    /// QoS 0 by default.
    public var qos: QoS
    /// `protocol`: 3 (MQTT 3.1), 4 (3.1.1, the default) or 5.
    public var protocolVersion: MQTTProtocolVersion
    public var filter: PipelineFilter?
    public var tls: TLSFiles?

    public static let defaultTopic = "dlstreamer_pipeline_results"

    public init(
        publishFrame: Bool = false,
        topic: String = PipelineConfiguration.defaultTopic,
        qos: QoS = .atMostOnce,
        protocolVersion: MQTTProtocolVersion = .v3_1_1,
        filter: PipelineFilter? = nil,
        tls: TLSFiles? = nil
    ) {
        self.publishFrame = publishFrame
        self.topic = topic
        self.qos = qos
        self.protocolVersion = protocolVersion
        self.filter = filter
        self.tls = tls
    }

    /// Reads the configuration file at `path`.
    public init(contentsOfFile path: String) throws(PipelineConfigurationError) {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw PipelineConfigurationError(path: path, field: nil, "cannot read the file: \(error.localizedDescription)")
        }
        let document: JSONValue
        do {
            document = try JSONValue.parse(data)
        } catch {
            throw PipelineConfigurationError(path: path, field: nil, "\(error)")
        }
        do {
            try self.init(document: document)
        } catch var error {
            error.path = path
            throw error
        }
    }

    /// Reads the configuration from a parsed document: its `mqtt_publisher` object, or the
    /// document itself when it has no such member.
    public init(document: JSONValue) throws(PipelineConfigurationError) {
        let publisher = document["mqtt_publisher"] ?? document
        guard case .object = publisher else {
            throw PipelineConfigurationError(field: "mqtt_publisher", "must be an object, not \(publisher.typeName)")
        }
        self.init()
        if let value = publisher["publish_frame"] {
            guard let flag = value.boolValue else { throw Self.wrong("mqtt_publisher.publish_frame", value, "true or false") }
            publishFrame = flag
        }
        if let value = publisher["topic"] {
            guard let topic = value.stringValue else { throw Self.wrong("mqtt_publisher.topic", value, "a topic name") }
            do {
                try TopicName.validate(topic)
            } catch {
                throw PipelineConfigurationError(field: "mqtt_publisher.topic", "\"\(topic)\" is not a topic name: \(error)")
            }
            self.topic = topic
        }
        if let value = publisher["qos"] {
            guard let number = value.intValue, let qos = QoS(rawValue: UInt8(clamping: max(number, 0))), number >= 0 else {
                throw Self.wrong("mqtt_publisher.qos", value, "0, 1 or 2")
            }
            self.qos = qos
        }
        if let value = publisher["protocol"] {
            guard let number = value.intValue, (3...5).contains(number), let version = MQTTProtocolVersion(rawValue: UInt8(number)) else {
                throw Self.wrong("mqtt_publisher.protocol", value, "3 (MQTT 3.1), 4 (3.1.1) or 5")
            }
            protocolVersion = version
        }
        if let value = publisher["filter"], value != .null {
            filter = try Self.filter(value)
        }
        if let value = publisher["tls"], value != .null {
            guard case .object = value else { throw Self.wrong("mqtt_publisher.tls", value, "an object") }
            var files = TLSFiles()
            for (key, keyPath) in [("ca_cert", \TLSFiles.caCertificate), ("client_key", \.clientKey), ("client_cert", \.clientCertificate)] {
                guard let member = value[key], member != .null else { continue }
                guard let path = member.stringValue, !path.isEmpty else { throw Self.wrong("mqtt_publisher.tls.\(key)", member, "a file path") }
                files[keyPath: keyPath] = path
            }
            if (files.clientKey == nil) != (files.clientCertificate == nil) {
                throw PipelineConfigurationError(field: "mqtt_publisher.tls", "client_key and client_cert go together")
            }
            tls = files
        }
    }

    private static func filter(_ value: JSONValue) throws(PipelineConfigurationError) -> PipelineFilter {
        guard case .object = value else { throw wrong("mqtt_publisher.filter", value, "an object") }
        guard let typeValue = value["type"] else {
            throw PipelineConfigurationError(field: "mqtt_publisher.filter.type", "is missing: detection or classification")
        }
        guard let name = typeValue.stringValue, let kind = PipelineFilter.Kind(rawValue: name) else {
            throw wrong("mqtt_publisher.filter.type", typeValue, "\"detection\" or \"classification\"")
        }
        var thresholds: [String: Double] = [:]
        if let scores = value["label_score"], scores != .null {
            guard let members = scores.objectValue else { throw wrong("mqtt_publisher.filter.label_score", scores, "an object of label: threshold") }
            for (label, threshold) in members {
                guard let number = threshold.doubleValue else {
                    throw wrong("mqtt_publisher.filter.label_score.\(label)", threshold, "a number")
                }
                thresholds[label] = number
            }
        }
        return PipelineFilter(kind: kind, labelScore: thresholds)
    }

    private static func wrong(_ field: String, _ value: JSONValue, _ expected: String) -> PipelineConfigurationError {
        PipelineConfigurationError(field: field, "is \(value.jsonText), expected \(expected)")
    }
}

/// A pipeline configuration that cannot be used, naming the file and the option.
public struct PipelineConfigurationError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The configuration file, when the configuration came from one.
    public var path: String?
    /// The option, as a dotted path (`mqtt_publisher.qos`).
    public var field: String?
    public var reason: String

    public init(path: String? = nil, field: String?, _ reason: String) {
        self.path = path
        self.field = field
        self.reason = reason
    }

    public var description: String {
        let place = [path, field].compactMap { $0 }.joined(separator: ": ")
        return place.isEmpty ? reason : "\(place) \(reason)"
    }
}
