import Foundation
import NIOCore
import NIOPosix

/// A real mosquitto broker on 127.0.0.1, started for one test and stopped by PID.
public final class Mosquitto: @unchecked Sendable {
    public let port: Int
    private let process: ChildProcess
    private let directory: URL

    private init(port: Int, process: ChildProcess, directory: URL) {
        self.port = port
        self.process = process
        self.directory = directory
    }

    /// Starts mosquitto with `allow_anonymous true` and any extra configuration lines.
    public static func start(extraConfiguration: String = "") async throws -> Mosquitto {
        guard
            let executable = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto", "/usr/local/sbin/mosquitto"]
                .first(where: FileManager.default.isExecutableFile(atPath:))
        else { throw InteropError("mosquitto is not installed: run scripts/test, which installs it") }

        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("databus-mosquitto-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        // mosquitto started as root drops to the mosquitto user: its files must be readable by anyone.
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: directory.path)

        for _ in 0..<5 {
            let port = try await freePort()
            let configuration = directory.appendingPathComponent("mosquitto.conf")
            try """
            listener \(port) 127.0.0.1
            allow_anonymous true
            persistence false
            log_dest stderr
            \(extraConfiguration)
            """.write(to: configuration, atomically: true, encoding: .utf8)
            try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: configuration.path)

            let process = try ChildProcess.spawn(executable, ["-c", configuration.path])
            let broker = Mosquitto(port: port, process: process, directory: directory)
            if await broker.waitUntilListening() { return broker }
            await broker.stop()
        }
        throw InteropError("mosquitto did not start listening")
    }

    private func waitUntilListening() async -> Bool {
        for _ in 0..<100 {
            guard process.isRunning else { return false }
            if let channel = try? await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connect(host: "127.0.0.1", port: port).get()
            {
                try? await channel.close()
                return true
            }
            try? await Task.sleep(for: .milliseconds(50))
        }
        return false
    }

    /// Stops mosquitto by its PID and removes its folder.
    public func stop() async {
        await process.terminate()
        try? FileManager.default.removeItem(at: directory)
    }

    private static func freePort() async throws -> Int {
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .bind(host: "127.0.0.1", port: 0).get()
        let port = channel.localAddress?.port ?? 0
        try await channel.close()
        return port
    }
}

public struct InteropError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

extension Mosquitto {
    /// Starts mosquitto, runs `body` with it, and stops it by PID however `body` ends.
    public static func with(extraConfiguration: String = "", _ body: (Mosquitto) async throws -> Void) async throws {
        let broker = try await start(extraConfiguration: extraConfiguration)
        do {
            try await body(broker)
        } catch {
            await broker.stop()
            throw error
        }
        await broker.stop()
    }
}
