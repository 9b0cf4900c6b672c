import ArgumentParser
import Foundation
import Logging
import MQTTClient
import MQTTCore

/// Two traffic-light controllers kept in step over MQTT: the leader publishes its colour on
/// `light1` every few seconds, the follower answers on `light2` with the colour that keeps the
/// crossing safe, and the leader switches once it has the answer.
@main
struct TrafficLights: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "traffic-lights",
        abstract: "Keep two traffic-light controllers in step over a password-protected MQTT broker.",
        discussion: """
            The leader (light A) publishes its colour on light1 every --interval seconds and waits \
            for the follower (light B), which listens on light1 and answers on light2 with its own \
            colour: red while A is green or yellow, green while A is red. Once the answer is in, \
            the leader switches (green -> yellow -> red -> green) and prints the switch. \
            --role both (the default) runs both controllers, each with its own MQTT client.

            Examples:
              traffic-lights --port 1883 --username lights --password secret --switches 5
              traffic-lights --role follower --username lights --password secret
            """
    )

    enum Role: String, ExpressibleByArgument, CaseIterable {
        case both, leader, follower
    }

    @Option(help: "The broker's host.")
    var host = "127.0.0.1"

    @Option(help: "The broker's port.")
    var port = 1883

    @Option(help: "The user name to log in with.")
    var username: String?

    @Option(help: "The password to log in with.")
    var password: String?

    @Option(help: "Which controllers this process runs: both, leader or follower.")
    var role: Role = .both

    @Option(help: "Seconds between the leader's colour messages.")
    var interval = 3.0

    @Option(help: "Stop after this many switches (the leader); run forever when not given.")
    var switches: Int?

    func validate() throws {
        guard interval > 0 else { throw ValidationError("--interval must be more than 0.") }
        if let switches, switches < 1 { throw ValidationError("--switches must be 1 or more.") }
    }

    func run() async throws {
        var logger = Logger(label: "traffic-lights")
        logger.logLevel = .warning
        let follower = role == .leader ? nil : try await connect("light-b-\(UInt16.random(in: 0...UInt16.max))", logger: logger)
        let leader = role == .follower ? nil : try await connect("light-a-\(UInt16.random(in: 0...UInt16.max))", logger: logger)

        try await withThrowingTaskGroup(of: Void.self) { group in
            if let follower {
                let requests = try await follower.subscribe(to: "light1", qos: .atLeastOnce)
                group.addTask { try await Self.follow(follower, requests: requests) }
            }
            if let leader {
                let answers = try await leader.subscribe(to: "light2", qos: .atLeastOnce)
                group.addTask {
                    try await Self.lead(leader, answers: answers, interval: .milliseconds(Int64(interval * 1000)), switches: switches)
                }
            }
            // The leader ends the run after --switches; a follower alone runs until stopped.
            try await group.next()
            group.cancelAll()
        }
        await leader?.disconnect()
        await follower?.disconnect()
    }

    private func connect(_ identifier: String, logger: Logger) async throws -> MQTTClient {
        var configuration = MQTTClient.Configuration(host: host, port: port, clientIdentifier: identifier, protocolVersion: .v3_1_1)
        configuration.username = username
        configuration.password = password.map { Array($0.utf8) }
        let client = MQTTClient(configuration: configuration, logger: logger)
        do {
            try await client.connect()
        } catch {
            throw ValidationError("\(identifier) could not connect to \(host):\(port): \(error)")
        }
        return client
    }

    /// The follower: answers every colour of light A with light B's.
    static func follow(_ client: MQTTClient, requests: MQTTMessages) async throws {
        for await message in requests {
            guard let colour = Colour(rawValue: message.payloadString) else { continue }
            try await client.publish(topic: "light2", payload: colour.crossing.rawValue, qos: .atLeastOnce)
        }
    }

    /// The leader: publishes its colour, waits for the answer, switches.
    static func lead(_ client: MQTTClient, answers: MQTTMessages, interval: Duration, switches: Int?) async throws {
        var colour = Colour.green
        var count = 0
        var iterator = answers.makeAsyncIterator()
        while switches.map({ count < $0 }) ?? true {
            try await Task.sleep(for: interval)
            try await client.publish(topic: "light1", payload: colour.rawValue, qos: .atLeastOnce)
            guard let answer = await iterator.next(), let other = Colour(rawValue: answer.payloadString) else { return }
            guard other == colour.crossing else {
                say("light B answered \(other.rawValue) to \(colour.rawValue): not switching")
                continue
            }
            let next = colour.next
            count += 1
            say("switch \(count): light A \(colour.rawValue) -> \(next.rawValue), light B \(other.rawValue) -> \(next.crossing.rawValue)")
            colour = next
        }
    }
}

/// Prints a line at once (standard output may be a file or a pipe).
func say(_ line: String) {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}

/// A traffic light's colour.
enum Colour: String {
    case green, yellow, red

    /// The leader's next colour.
    var next: Colour {
        switch self {
        case .green: .yellow
        case .yellow: .red
        case .red: .green
        }
    }

    /// The colour of the crossing light while this one shows.
    var crossing: Colour { self == .red ? .green : .red }
}
