import Crypto
import Foundation
import LPRModel

/// Completes what an AI engine hands the camera agent into a seed-format detection: the
/// envelope fields it left out are filled in (`message_id`, `timestamp`, `camera_id`,
/// `checkpoint_id`), everything it gave is kept as it came, and the result is validated as the
/// server will validate it.
public enum DetectionEnvelope {
    /// Completes and validates one detection.
    ///
    /// - Parameters:
    ///   - json: the detection as the engine wrote it.
    ///   - cameraID: this agent's camera; a different `camera_id` in `json` is refused, since the
    ///     server would refuse it on this camera's topic.
    ///   - checkpointID: the checkpoint filled in when `checkpoint_id` is missing.
    ///   - now: the `timestamp` filled in when it is missing.
    ///   - newMessageID: makes the `message_id` filled in when it is missing or empty. By default
    ///     a detection with its own `timestamp` gets an id made from its content and camera
    ///     (``contentMessageID(of:cameraID:)``), so that the same detection handed over again (an
    ///     engine re-posting after a lost answer, an `--input` file read again after a restart)
    ///     is the same message and is stored once; one without gets a random id.
    /// - Returns: the detection, with the envelope fields first.
    /// - Throws: every missing or mistyped field with its path.
    public static func complete(
        _ json: JSONObject,
        cameraID: String,
        checkpointID: String,
        now: Date,
        newMessageID: (() -> String)? = nil
    ) throws(MessageValidationError) -> Detection {
        var envelope = JSONObject()
        let messageID = json["message_id"]
        let timestamp = json["timestamp"]
        if isMissing(messageID) {
            let made = newMessageID?() ?? (isMissing(timestamp) ? UUID().uuidString.lowercased() : contentMessageID(of: json, cameraID: cameraID))
            envelope["message_id"] = .string(made)
        } else {
            envelope["message_id"] = messageID
        }
        envelope["timestamp"] = isMissing(timestamp) ? .timestamp(now) : timestamp
        let camera = json["camera_id"]
        envelope["camera_id"] = isMissing(camera) ? .string(cameraID) : camera
        let checkpoint = json["checkpoint_id"]
        envelope["checkpoint_id"] = isMissing(checkpoint) ? .string(checkpointID) : checkpoint
        for member in json where envelope[member.key] == nil {
            envelope[member.key] = member.value
        }
        if let given = camera?.stringValue, !given.isEmpty, given != cameraID {
            throw MessageValidationError(path: "camera_id", reason: "\"\(given)\" is not this agent's camera \"\(cameraID)\"")
        }
        return try Detection(validating: envelope, topicCamera: cameraID)
    }

    /// Parses and completes one detection; see ``complete(_:cameraID:checkpointID:now:newMessageID:)``.
    public static func complete(
        payload: some Collection<UInt8>,
        cameraID: String,
        checkpointID: String,
        now: Date
    ) throws(MessageValidationError) -> Detection {
        try complete(JSONObject.parse(payload), cameraID: cameraID, checkpointID: checkpointID, now: now)
    }

    /// A `message_id` made from a detection's content as the engine wrote it and its camera: a
    /// version 8 UUID from the first 16 bytes of their SHA-256.
    public static func contentMessageID(of json: JSONObject, cameraID: String) -> String {
        var hasher = SHA256()
        hasher.update(data: Array(cameraID.utf8) + [0])
        hasher.update(data: JSONValue.object(json).jsonBytes)
        var bytes = Array(hasher.finalize().prefix(16))
        bytes[6] = (bytes[6] & 0x0F) | 0x80
        bytes[8] = (bytes[8] & 0x3F) | 0x80
        let hex = bytes.map { String(format: "%02x", $0) }.joined()
        let parts = [hex.prefix(8), hex.dropFirst(8).prefix(4), hex.dropFirst(12).prefix(4), hex.dropFirst(16).prefix(4), hex.dropFirst(20)]
        return parts.joined(separator: "-")
    }

    private static func isMissing(_ value: JSONValue?) -> Bool {
        guard let value else { return true }
        if value.isNull { return true }
        if case .string(let text) = value, text.isEmpty { return true }
        return false
    }
}
