import Foundation
import LPRModel

/// The configuration a camera has applied, and the rules for applying `config/update`: the
/// update must be a valid configuration for this camera; an update whose `config_type` and
/// `config_data` equal what is applied (the retained update the broker sends again at every
/// subscription) changes nothing and is not reported again. Pure; the agent keeps ``applied``
/// in a local file so that a restart keeps it.
public struct CameraConfigurationState: Sendable, Hashable {
    public let cameraID: String
    /// The configuration as applied and reported on `config`, `nil` before the first update.
    public private(set) var applied: CameraConfiguration?

    public enum Outcome: Sendable, Hashable {
        /// Applied: report this on `config` (retained, QoS 2) and keep it.
        case applied(CameraConfiguration)
        /// The same configuration is applied already.
        case unchanged
        /// Not a valid configuration for this camera; the applied one stays.
        case refused(MessageValidationError)
    }

    public init(cameraID: String, applied: CameraConfiguration? = nil) {
        self.cameraID = cameraID
        self.applied = applied
    }

    /// Applies a `config/update` payload.
    ///
    /// - Parameters:
    ///   - payload: the update as received.
    ///   - now: the applied configuration's `timestamp`.
    ///   - messageID: the applied configuration's `message_id`.
    public mutating func apply(update payload: some Collection<UInt8>, now: Date, messageID: String) -> Outcome {
        let update: CameraConfiguration
        do {
            update = try CameraConfiguration(validating: JSONObject.parse(payload), topicCamera: cameraID)
        } catch {
            return .refused(error)
        }
        if let applied, applied.configType == update.configType, applied.configData == update.configData {
            return .unchanged
        }
        let configuration = CameraConfiguration(
            messageID: messageID,
            timestamp: now,
            cameraID: cameraID,
            configType: update.configType,
            configData: update.configData
        )
        applied = configuration
        return .applied(configuration)
    }

    // MARK: The local file

    /// Reads the applied configuration kept in `path`; `nil` when there is no file. A file that
    /// is not a valid configuration of this camera is an error.
    public static func load(path: String, cameraID: String) throws -> CameraConfigurationState {
        guard FileManager.default.fileExists(atPath: path) else { return CameraConfigurationState(cameraID: cameraID) }
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        let configuration = try CameraConfiguration(validating: JSONObject.parse(data), topicCamera: cameraID)
        return CameraConfigurationState(cameraID: cameraID, applied: configuration)
    }

    /// Writes the applied configuration to `path`, atomically (a new file renamed over the old).
    public func save(path: String) throws {
        guard let applied else { return }
        try LocalFile.writeAtomically(JSONValue.object(applied.json).jsonBytes, to: path)
    }
}

/// Small files the agent keeps next to its journal.
enum LocalFile {
    /// Writes `bytes` to a temporary file beside `path`, flushes it to disk and renames it over
    /// `path`, so that a crash leaves the old file or the new one, never half of one.
    static func writeAtomically(_ bytes: [UInt8], to path: String) throws {
        let temporary = path + ".tmp"
        let descriptor = open(temporary, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard descriptor >= 0 else { throw LocalFileError("cannot write \(temporary): \(String(cString: strerror(errno)))") }
        var written = 0
        while written < bytes.count {
            let count = bytes.withUnsafeBytes { write(descriptor, $0.baseAddress! + written, bytes.count - written) }
            if count < 0 {
                if errno == EINTR { continue }
                let reason = String(cString: strerror(errno))
                close(descriptor)
                throw LocalFileError("cannot write \(temporary): \(reason)")
            }
            written += count
        }
        fsync(descriptor)
        close(descriptor)
        guard rename(temporary, path) == 0 else { throw LocalFileError("cannot rename \(temporary): \(String(cString: strerror(errno)))") }
    }
}

struct LocalFileError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
