import Foundation

/// A folder for one test's files (certificates, password files, persistence), readable by the
/// `mosquitto` user that a broker started as root drops to.
public struct TemporaryDirectory: Sendable {
    public let url: URL
    public var path: String { url.path }

    /// Makes a new folder with mode 0755.
    public init(prefix: String = "databus-test") throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("\(prefix)-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: url.path)
    }

    /// The path of `name` in the folder.
    public func file(_ name: String) -> String { url.appendingPathComponent(name).path }

    /// Writes `contents` to `name` with mode 0644 and returns its path.
    @discardableResult
    public func write(_ name: String, _ contents: String) throws -> String {
        let path = file(name)
        try contents.write(toFile: path, atomically: true, encoding: .utf8)
        try makeReadable(name)
        return path
    }

    /// Sets mode 0644 on `name` (0755 for a folder).
    public func makeReadable(_ name: String) throws {
        var isDirectory: ObjCBool = false
        _ = FileManager.default.fileExists(atPath: file(name), isDirectory: &isDirectory)
        try FileManager.default.setAttributes([.posixPermissions: isDirectory.boolValue ? 0o755 : 0o644], ofItemAtPath: file(name))
    }

    /// Makes a sub-folder that anyone may write to (mosquitto's persistence location).
    @discardableResult
    public func makeWritableFolder(_ name: String) throws -> String {
        let path = file(name)
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        try FileManager.default.setAttributes([.posixPermissions: 0o777], ofItemAtPath: path)
        return path
    }

    public func remove() {
        try? FileManager.default.removeItem(at: url)
    }
}
