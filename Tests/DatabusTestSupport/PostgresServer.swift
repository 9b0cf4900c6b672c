import Foundation

/// A throw-away PostgreSQL cluster (Debian's `postgresql` package) on a free port of 127.0.0.1,
/// in a temporary folder, run as the `postgres` user (PostgreSQL refuses root) and stopped by
/// its data folder when done.
public final class PostgresServer: Sendable {
    public let port: Int
    public let directory: String
    private let binaries: String

    /// `postgres://lpr@127.0.0.1:PORT/postgres`.
    public var url: String { "postgres://lpr@127.0.0.1:\(port)/postgres?sslmode=disable" }

    private init(port: Int, directory: String, binaries: String) {
        self.port = port
        self.directory = directory
        self.binaries = binaries
    }

    /// The folder of `initdb` and `pg_ctl`.
    static func binaries() throws -> String {
        let root = "/usr/lib/postgresql"
        let versions = (try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []
        guard let newest = versions.compactMap(Int.init).max() else {
            throw InteropError("PostgreSQL is not installed (no \(root)/*/bin): run scripts/test, which installs it")
        }
        return "\(root)/\(newest)/bin"
    }

    /// Creates and starts a cluster.
    public static func start() async throws -> PostgresServer {
        let binaries = try binaries()
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("databus-postgres-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let asRoot = getuid() == 0
        if asRoot {
            _ = try await runProgram("/bin/chown", ["postgres", directory])
        }
        let initialize = "\(binaries)/initdb -D \(directory)/db -A trust -U lpr >\(directory)/initdb.log 2>&1"
        let initialized = try await shell(initialize, asRoot: asRoot)
        guard initialized == 0 else {
            let log = (try? String(contentsOfFile: "\(directory)/initdb.log", encoding: .utf8)) ?? ""
            throw InteropError("initdb failed: \(log.suffix(500))")
        }
        for _ in 0..<5 {
            let port = try await Mosquitto.freePort()
            let options = "-p \(port) -k \(directory) -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=100"
            let status = try await shell(
                "\(binaries)/pg_ctl -D \(directory)/db -o '\(options)' -l \(directory)/server.log -w -t 30 start",
                asRoot: asRoot
            )
            if status == 0 { return PostgresServer(port: port, directory: directory, binaries: binaries) }
        }
        let log = (try? String(contentsOfFile: "\(directory)/server.log", encoding: .utf8)) ?? ""
        throw InteropError("PostgreSQL did not start: \(log.suffix(500))")
    }

    /// Stops the cluster and removes its folder.
    public func stop() async {
        _ = try? await Self.shell("\(binaries)/pg_ctl -D \(directory)/db -m fast -w stop", asRoot: getuid() == 0)
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// Starts a cluster, runs `body` with it, and stops it however `body` ends.
    public static func with<T>(_ body: (PostgresServer) async throws -> T) async throws -> T {
        let server = try await start()
        do {
            let result = try await body(server)
            await server.stop()
            return result
        } catch {
            await server.stop()
            throw error
        }
    }

    private static func shell(_ command: String, asRoot: Bool) async throws -> Int32 {
        if asRoot {
            return try await runProgram("/bin/su", ["postgres", "-s", "/bin/sh", "-c", command], timeout: .seconds(60)).status
        }
        return try await runProgram("/bin/sh", ["-c", command], timeout: .seconds(60)).status
    }
}
