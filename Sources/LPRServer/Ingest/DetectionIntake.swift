import Foundation
import LPRModel

/// What the server makes of one message on `lprserver/cameras/{id}/detection`, before storing:
/// a pure function of the message, the time and the watch-list, so it is tested without a broker.
public enum DetectionIntake {
    /// A detection that can be stored.
    public struct Accepted: Sendable {
        public var detection: Detection
        public var record: DetectionRecord
        /// Watch-list matches, best first, at most one per entry and plate.
        public var matches: [WatchlistMatch]
    }

    /// A message refused, and whom to tell.
    public struct Rejected: Sendable {
        /// The camera the topic names: the ack goes to its ack topic.
        public var cameraID: String
        /// The message's `message_id`, when it had one: without it no ack can be sent.
        public var messageID: String?
        public var errors: [FieldError]
    }

    public enum Decision: Sendable {
        case accepted(Accepted)
        case rejected(Rejected)
    }

    /// The largest detection taken: ``Detection/maximumPayloadBytes`` (1 MiB).
    public static var maximumPayloadBytes: Int { Detection.maximumPayloadBytes }

    /// Up to this size an oversized detection is still parsed for its `message_id`, so that its
    /// camera is told and stops re-sending it; larger ones are refused unread.
    static let maximumParsedForMessageID = 16 << 20

    /// Validates a detection and matches its plates against the watch-list.
    ///
    /// - Parameters:
    ///   - cameraID: the camera named by the topic.
    ///   - payload: the message.
    ///   - receivedAt: when the server received it.
    ///   - matcher: the watch-list in force.
    ///   - makeID: new identifiers for alerts.
    public static func evaluate(
        cameraID: String,
        payload: some Collection<UInt8>,
        receivedAt: Date,
        matcher: WatchlistMatcher,
        makeID: () -> String = { UUID().uuidString.lowercased() }
    ) -> Decision {
        // A detection is about a kilobyte; one of megabytes is refused, answered by its
        // message_id when one is found, so that the camera does not send it again.
        if let tooLarge = Detection.sizeError(bytes: payload.count) {
            let messageID = payload.count <= maximumParsedForMessageID ? Detection.messageID(scanning: payload) : nil
            return .rejected(Rejected(cameraID: cameraID, messageID: messageID, errors: [tooLarge]))
        }
        let json: JSONObject
        do {
            json = try JSONObject.parse(payload)
        } catch {
            // Not a detection we can read (nested too deep, cut short after its message_id...):
            // answered by its message_id when one is found before what is wrong.
            return .rejected(Rejected(cameraID: cameraID, messageID: Detection.messageID(scanning: payload), errors: error.errors))
        }
        let detection: Detection
        do {
            detection = try Detection(validating: json, topicCamera: cameraID)
        } catch {
            return .rejected(Rejected(cameraID: cameraID, messageID: Detection.messageID(in: json), errors: error.errors))
        }
        var matches: [WatchlistMatch] = []
        for plate in detection.data.plates {
            matches += matcher.matches(
                plate: plate.plateNumber,
                camera: detection.cameraID,
                checkpoint: detection.checkpointID,
                country: plate.country,
                at: detection.timestamp
            )
        }
        let alerts = matches.map { match in
            Alert(
                alertID: makeID(),
                level: match.entry.level,
                kind: .watchlistHit,
                cameraID: detection.cameraID,
                message: "watch-listed plate \(match.entry.plate) read as \(match.plateNumber) at \(detection.checkpointID)"
                    + (match.entry.reason.isEmpty ? "" : " (\(match.entry.reason))"),
                timestamp: receivedAt,
                details: [
                    "plate_number": .string(match.plateNumber), "matched_plate": .string(match.entry.plate), "distance": .int(match.distance),
                    "match": .string(match.kind.rawValue), "entry_id": .string(match.entry.id), "checkpoint_id": .string(detection.checkpointID),
                    "detection_message_id": .string(detection.messageID),
                ]
            )
        }
        // Stored as it came, byte for byte (it parsed, so it is UTF-8).
        let record = DetectionRecord(detection, receivedAt: receivedAt, payload: String(decoding: payload, as: UTF8.self), alerts: alerts)
        return .accepted(Accepted(detection: detection, record: record, matches: matches))
    }
}
