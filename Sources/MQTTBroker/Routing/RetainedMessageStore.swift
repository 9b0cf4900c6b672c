import MQTTCore
import NIOConcurrencyHelpers
import NIOCore

/// The last retained message of every topic.
final class RetainedMessageStore: Sendable {
    private let messages = NIOLockedValueBox<[String: ApplicationMessage]>([:])

    var count: Int { messages.withLockedValue { $0.count } }

    /// Stores `message`, or deletes the topic's retained message when the payload is empty.
    func retain(_ message: ApplicationMessage) {
        messages.withLockedValue { messages in
            if message.payload.readableBytes == 0 {
                messages[message.topic] = nil
            } else {
                messages[message.topic] = message
            }
        }
    }

    /// The retained messages whose topics match `filter`, expired ones removed.
    func matching(_ filter: String, now: NIODeadline) -> [ApplicationMessage] {
        messages.withLockedValue { messages in
            var result: [ApplicationMessage] = []
            var expired: [String] = []
            for (topic, message) in messages where TopicFilter.matches(filter, name: topic) {
                if message.isExpired(at: now) {
                    expired.append(topic)
                } else {
                    result.append(message)
                }
            }
            for topic in expired { messages[topic] = nil }
            return result.sorted { $0.topic < $1.topic }
        }
    }

    func all() -> [ApplicationMessage] {
        messages.withLockedValue { Array($0.values) }
    }
}
