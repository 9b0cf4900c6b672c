import Foundation
import MQTTBroker

/// What `databus passwd` does to a mosquitto password file: add or change a user, delete one,
/// or hash a file of plain `user:password` lines in place.
public enum PasswordFileTool {
    public struct Failure: Error, CustomStringConvertible {
        public var description: String
        public init(_ description: String) { self.description = description }
    }

    /// Reads `path`; a missing file is an error naming it.
    public static func read(_ path: String) throws -> PasswordFile {
        guard FileManager.default.fileExists(atPath: path) else {
            throw Failure("\(path) does not exist (use -c to create it)")
        }
        do {
            return try PasswordFile(contentsOf: path)
        } catch {
            throw Failure("\(error)")
        }
    }

    /// Checks a username as mosquitto_passwd does: not empty, no `:`, no control characters.
    public static func validate(username: String) throws {
        guard !username.isEmpty else { throw Failure("the username is empty") }
        guard !username.contains(":") else { throw Failure("a username may not contain ':'") }
        guard !username.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) else {
            throw Failure("a username may not contain control characters")
        }
        guard username.utf8.count <= 65_535 else { throw Failure("the username is longer than 65,535 bytes") }
    }

    public static func validate(password: String) throws {
        guard !password.isEmpty else { throw Failure("the password is empty") }
        guard password.utf8.count <= 65_535 else { throw Failure("the password is longer than 65,535 bytes") }
    }

    /// Hashes every plain `user:password` line of `text`; lines that already hold a `$6$` or
    /// `$7$` hash are kept as they are, so running it twice does not hash a hash.
    public static func hashPlainFile(_ text: String, algorithm: PasswordHash.Algorithm, file: String) throws -> PasswordFile {
        var result = PasswordFile()
        for (number, rawLine) in text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).enumerated() {
            let line = rawLine.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") { continue }
            guard let colon = line.firstIndex(of: ":"), colon != line.startIndex else {
                throw Failure("\(file):\(number + 1): expected username:password")
            }
            let username = String(line[..<colon])
            let secret = String(line[line.index(after: colon)...])
            if let existing = PasswordHash(encoded: secret) {
                result.set(username, existing)
            } else {
                try validate(password: secret)
                result.set(username, PasswordHash(hashing: Array(secret.utf8), algorithm: algorithm))
            }
        }
        return result
    }

    /// Writes `file` to `path` through a temporary file and a rename, so a crash never leaves
    /// half a file; an existing file keeps its permissions, a new one is readable by its owner only.
    public static func write(_ file: PasswordFile, to path: String) throws {
        let manager = FileManager.default
        var mode: Int = 0o600
        if let attributes = try? manager.attributesOfItem(atPath: path), let existing = attributes[.posixPermissions] as? Int {
            mode = existing
        }
        let temporary = path + ".tmp-\(getpid())"
        guard manager.createFile(atPath: temporary, contents: Data(file.text.utf8), attributes: [.posixPermissions: mode]) else {
            throw Failure("cannot write \(temporary)")
        }
        guard rename(temporary, path) == 0 else {
            let reason = String(cString: strerror(errno))
            try? manager.removeItem(atPath: temporary)
            throw Failure("cannot replace \(path): \(reason)")
        }
    }
}
