import Foundation

/// Runs `bridge_jwt_command` (through `/bin/sh -c`) before each connection attempt: what it
/// prints, without the trailing newline, is the password, so a bridge can log in to a broker
/// that wants a fresh device JWT every time.
enum BridgeCredentialCommand {
    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    /// How long the command may run.
    static let timeout: TimeInterval = 30

    /// The command's standard output, trimmed of trailing line breaks; its standard error goes to ours.
    /// - Throws: ``Failure`` when it cannot start, exits non-zero, runs too long or prints nothing.
    static func output(of command: String) async throws -> String {
        // Process and its pipe block: a thread of their own, not the cooperative pool or an event loop.
        let output = try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<String, any Error>) in
            Thread { continuation.resume(with: Result { try run(command) }) }.start()
        }
        var token = Substring(output)
        while token.last == "\n" || token.last == "\r" { token = token.dropLast() }
        guard !token.isEmpty else { throw Failure(description: "bridge_jwt_command printed nothing: \(command)") }
        return String(token)
    }

    private static func run(_ command: String) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", command]
        process.standardInput = FileHandle.nullDevice
        let pipe = Pipe()
        process.standardOutput = pipe
        do {
            try process.run()
        } catch {
            throw Failure(description: "could not run /bin/sh: \(error)")
        }
        let timer = DispatchWorkItem { if process.isRunning { process.terminate() } }
        DispatchQueue.global().asyncAfter(deadline: .now() + timeout, execute: timer)
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        timer.cancel()
        guard process.terminationReason == .exit else {
            throw Failure(description: "bridge_jwt_command was stopped (signal \(process.terminationStatus); timeout \(Int(timeout)) s)")
        }
        guard process.terminationStatus == 0 else {
            throw Failure(description: "bridge_jwt_command exited with \(process.terminationStatus)")
        }
        return String(decoding: data, as: UTF8.self)
    }
}
