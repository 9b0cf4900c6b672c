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
    ///   - newMessageID: makes the `message_id` filled in when it is missing or empty.
    /// - Returns: the detection, with the envelope fields first.
    /// - Throws: every missing or mistyped field with its path.
    public static func complete(
        _ json: JSONObject,
        cameraID: String,
        checkpointID: String,
        now: Date,
        newMessageID: () -> String = { UUID().uuidString.lowercased() }
    ) throws(MessageValidationError) -> Detection {
        var envelope = JSONObject()
        let messageID = json["message_id"]
        envelope["message_id"] = isMissing(messageID) ? .string(newMessageID()) : messageID
        let timestamp = json["timestamp"]
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

    private static func isMissing(_ value: JSONValue?) -> Bool {
        guard let value else { return true }
        if value.isNull { return true }
        if case .string(let text) = value, text.isEmpty { return true }
        return false
    }
}
