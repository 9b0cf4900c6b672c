import Foundation
import LPRModel

/// Commands waiting for their camera's answer: matched by the answer's `message_id` or, over
/// MQTT 5, by its correlation data, and timed out when no answer comes. Pure: the server
/// keeps one behind a lock and carries out what it returns.
struct ControlCorrelator: Sendable {
    struct Pending: Sendable {
        let command: ControlCommand
        let deadline: Date
    }

    private(set) var pending: [String: Pending] = [:]

    /// A command was sent and waits until `deadline`.
    mutating func sent(_ command: ControlCommand, deadline: Date) {
        pending[command.messageID] = Pending(command: command, deadline: deadline)
    }

    /// Which waiting command an answer on `control/response` belongs to: its `message_id`
    /// first, else the correlation data (the command's `message_id` as bytes), and it must come
    /// from the camera the command went to. Removes it.
    mutating func answer(cameraID: String, messageID: String?, correlation: String?) -> ControlCommand? {
        for candidate in [messageID, correlation].compactMap({ $0 }) {
            if let waiting = pending[candidate], waiting.command.cameraID == cameraID {
                pending[candidate] = nil
                return waiting.command
            }
        }
        return nil
    }

    /// Commands whose deadline passed by `now`; removed.
    mutating func expire(now: Date) -> [ControlCommand] {
        let expired = pending.values.filter { $0.deadline <= now }.map(\.command)
        for command in expired { pending[command.messageID] = nil }
        return expired
    }

    /// Gives up on one command (its waiter went away).
    mutating func cancel(messageID: String) -> ControlCommand? {
        pending.removeValue(forKey: messageID)?.command
    }
}
