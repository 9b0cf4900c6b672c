import DatabusTestSupport
import Foundation
import NIOCore
import NIOPosix

/// The `databus` executable built next to the test bundle.
func databusExecutable() throws -> String {
    let directory = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    for candidate in [directory, directory.deletingLastPathComponent()] {
        let path = candidate.appendingPathComponent("databus").path
        if FileManager.default.isExecutableFile(atPath: path) { return path }
    }
    throw InteropError("the databus executable is not built next to the tests (\(directory.path)); run `swift build` first")
}

func waitForPort(_ port: Int) async throws {
    for _ in 0..<200 {
        if let channel = try? await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton).connect(host: "127.0.0.1", port: port).get() {
            try? await channel.close()
            return
        }
        try await Task.sleep(for: .milliseconds(25))
    }
    throw InteropError("the broker did not listen on \(port)")
}

func freePort() async throws -> Int {
    let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton).bind(host: "127.0.0.1", port: 0).get()
    let port = channel.localAddress!.port!
    try await channel.close()
    return port
}

/// A `databus broker` process on a free port, started from a configuration whose `{PORT}`
/// is filled in. Another process may take a free port before the broker binds it: then the
/// broker exits at once, and this tries again on another port.
func startBrokerProcess(
    configuration template: String,
    file: String
) async throws -> (process: ChildProcess, port: Int) {
    let executable = try databusExecutable()
    for _ in 0..<5 {
        let port = try await freePort()
        try template.replacingOccurrences(of: "{PORT}", with: "\(port)").write(toFile: file, atomically: true, encoding: .utf8)
        let process = try ChildProcess.spawn(executable, ["broker", "-c", file])
        do {
            try await waitForPort(port)
        } catch {
            await process.terminate()
            continue
        }
        // Listening, and still our process (not another one that took the port).
        try await Task.sleep(for: .milliseconds(100))
        if process.isRunning { return (process, port) }
    }
    throw InteropError("could not start a databus broker process on a free port")
}
