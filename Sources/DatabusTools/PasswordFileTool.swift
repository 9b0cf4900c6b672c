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
        // Through a link, the file it points at is the one replaced.
        let path = URL(fileURLWithPath: path).resolvingSymlinksInPath().path
        var mode: Int = 0o600
        var owner: (uid_t, gid_t)?
        var existing = stat()
        if stat(path, &existing) == 0 {
            mode = Int(existing.st_mode & 0o7777)
            owner = (existing.st_uid, existing.st_gid)
        }
        let temporary = path + ".tmp-\(getpid())"
        let descriptor = open(temporary, O_WRONLY | O_CREAT | O_EXCL, mode_t(mode))
        guard descriptor >= 0 else { throw Failure("cannot create \(temporary): \(String(cString: strerror(errno)))") }
        let bytes = Array(file.text.utf8)
        let written = bytes.withUnsafeBytes { Glibc.write(descriptor, $0.baseAddress, $0.count) }
        // The broker (often another user) must still read it: keep the owner and group.
        if let owner { _ = fchown(descriptor, owner.0, owner.1) }
        _ = fchmod(descriptor, mode_t(mode))
        let synced = fsync(descriptor)
        close(descriptor)
        guard written == bytes.count, synced == 0 else {
            try? manager.removeItem(atPath: temporary)
            throw Failure("cannot write \(temporary)")
        }
        guard rename(temporary, path) == 0 else {
            let reason = String(cString: strerror(errno))
            try? manager.removeItem(atPath: temporary)
            throw Failure("cannot replace \(path): \(reason)")
        }
    }
}
