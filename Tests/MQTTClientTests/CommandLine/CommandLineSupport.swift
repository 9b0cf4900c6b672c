import DatabusTestSupport
import Foundation
import NIOConcurrencyHelpers
import Testing

/// How a command-line program ended: its exit status and what it printed.
struct CommandResult: Sendable {
    var status: Int32
    /// Standard output, byte for byte.
    var output: [UInt8]
    var error: String

    var outputText: String { String(decoding: output, as: UTF8.self) }
}

/// A command-line program a test started, writing to files in the test's folder.
struct RunningCommand: Sendable {
    let process: ChildProcess
    let outputPath: String
    let errorPath: String

    /// Waits for the program to end (SIGKILL after `timeout`) and returns what it printed.
    func finish(timeout: Duration = .seconds(15)) async -> CommandResult {
        let status = await process.wait(timeout: timeout)
        return result(status: status)
    }

    /// Standard output so far.
    var outputSoFar: [UInt8] { (try? [UInt8](Data(contentsOf: URL(fileURLWithPath: outputPath)))) ?? [] }

    func result(status: Int32) -> CommandResult {
        CommandResult(
            status: status,
            output: outputSoFar,
            error: (try? String(contentsOfFile: errorPath, encoding: .utf8)) ?? ""
        )
    }
}

/// Starts command-line programs for one test and stops every one still running when the
/// test ends, however it ends.
final class CommandRunner: Sendable {
    let directory: TemporaryDirectory
    private let started = NIOLockedValueBox<[ChildProcess]>([])
    private let counter = NIOLockedValueBox(0)

    private init(directory: TemporaryDirectory) { self.directory = directory }

    /// Runs `body` with a runner whose programs are all stopped (by PID) afterwards.
    static func with<T>(_ body: (CommandRunner) async throws -> T) async throws -> T {
        let directory = try TemporaryDirectory(prefix: "databus-cli")
        let runner = CommandRunner(directory: directory)
        do {
            let result = try await body(runner)
            await runner.stopAll()
            directory.remove()
            return result
        } catch {
            await runner.stopAll()
            directory.remove()
            throw error
        }
    }

    /// The `databus` executable built next to the tests.
    static func databus() throws -> String { try DatabusBrokerProcess.executable() }

    /// Starts `program` with `arguments`, standard input from `input` when given.
    func start(_ program: String, _ arguments: [String], input: [UInt8]? = nil) throws -> RunningCommand {
        let number = counter.withLockedValue { counter in
            counter += 1
            return counter
        }
        var inputPath: String?
        if let input {
            inputPath = directory.file("input-\(number)")
            try Data(input).write(to: URL(fileURLWithPath: inputPath!))
        }
        let outputPath = directory.file("output-\(number)")
        let errorPath = directory.file("error-\(number)")
        let process = try ChildProcess.spawn(program, arguments, inputPath: inputPath, outputPath: outputPath, errorPath: errorPath)
        started.withLockedValue { $0.append(process) }
        return RunningCommand(process: process, outputPath: outputPath, errorPath: errorPath)
    }

    /// Starts `databus` with `arguments`.
    func databus(_ arguments: [String], input: [UInt8]? = nil) throws -> RunningCommand {
        try start(try Self.databus(), arguments, input: input)
    }

    /// Runs `program` to its end.
    func run(_ program: String, _ arguments: [String], input: [UInt8]? = nil, timeout: Duration = .seconds(15)) async throws -> CommandResult {
        let command = try start(program, arguments, input: input)
        return await command.finish(timeout: timeout)
    }

    func stopAll() async {
        for process in started.withLockedValue({ $0 }) where process.isRunning {
            await process.terminate(timeout: .seconds(2))
        }
    }
}

extension Mosquitto {
    /// Configuration lines that make mosquitto log each subscription, for ``waitForSubscriptions(_:)``.
    static let logSubscriptions = "log_type error\nlog_type warning\nlog_type subscribe"

    /// Waits until mosquitto (started with ``logSubscriptions``) has logged a subscription of
    /// each of these clients.
    func waitForSubscriptions(_ clientIdentifiers: [String], timeout: Duration = .seconds(10)) async throws {
        let log = directory.appendingPathComponent("mosquitto.log").path
        try await withDeadline(timeout, "subscriptions of \(clientIdentifiers)") {
            while true {
                let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
                if clientIdentifiers.allSatisfy({ text.contains(": \($0) ") }) { return }
                try await Task.sleep(for: .milliseconds(10))
            }
        }
    }

    /// How many times mosquitto has logged a subscription of this client.
    func subscriptionCount(of clientIdentifier: String) -> Int {
        let log = directory.appendingPathComponent("mosquitto.log").path
        let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        return text.split(separator: "\n").filter { $0.contains(": \(clientIdentifier) ") }.count
    }
}
