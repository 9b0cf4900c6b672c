import ArgumentParser
import MQTTCore

/// `databus topic`: check topic names and filters the way the broker will.
struct TopicCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "topic",
        abstract: "Check an MQTT topic filter, and whether it matches topic names.",
        discussion: """
            Examples:
              databus topic 'lprserver/cameras/+/detection' lprserver/cameras/7/detection
              databus topic '$share/ingest/lprserver/#'
            Exits 0 when the filter is valid and matches every name given, 1 otherwise.
            """
    )

    @Argument(help: "A topic filter (may use + and #, or be a $share/{group}/{filter} shared subscription).")
    var filter: String

    @Argument(help: "Topic names to match against the filter.")
    var names: [String] = []

    func run() throws {
        var filter = self.filter
        do {
            if let shared = try SharedSubscription.parse(filter) {
                print("shared subscription: group \"\(shared.group)\", filter \"\(shared.filter)\"")
                filter = shared.filter
            } else {
                try TopicFilter.validate(filter)
            }
        } catch {
            print("invalid topic filter \"\(filter)\": \(error)")
            throw ExitCode.failure
        }
        var allMatch = true
        for name in names {
            do {
                try TopicName.validate(name)
            } catch {
                print("\(name): invalid topic name: \(error)")
                allMatch = false
                continue
            }
            let matches = TopicFilter.matches(filter, name: name)
            print("\(name): \(matches ? "matches" : "does not match")")
            allMatch = allMatch && matches
        }
        if !allMatch { throw ExitCode.failure }
    }
}
