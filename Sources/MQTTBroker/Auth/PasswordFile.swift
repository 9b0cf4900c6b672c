import Crypto
import Foundation
import _CryptoExtras

/// A password hash in mosquitto's format: `$6$salt$hash` (SHA-512 of password then salt) or
/// `$7$iterations$salt$hash` (PBKDF2-HMAC-SHA512, 64-byte key), salt and hash in base64.
public struct PasswordHash: Sendable, Hashable {
    public enum Algorithm: Sendable, Hashable {
        /// `$6$`: one SHA-512 over password and salt (mosquitto 1.6 and earlier).
        case sha512
        /// `$7$`: PBKDF2-HMAC-SHA512 with this many iterations (mosquitto 2 writes 101).
        case pbkdf2SHA512(iterations: Int)
    }

    public var algorithm: Algorithm
    public var salt: [UInt8]
    public var hash: [UInt8]

    /// Iterations mosquitto_passwd 2.0 uses, and ours by default.
    public static let defaultIterations = 101

    /// Checked against when a username is unknown, so that the answer takes as long as for a
    /// known user with a wrong password and does not tell which users exist.
    static let decoy = PasswordHash(
        hashing: [UInt8](),
        algorithm: .pbkdf2SHA512(iterations: defaultIterations),
        salt: [UInt8](repeating: 0, count: 12)
    )

    /// Hashes `password` with a fresh random salt of `saltLength` bytes (mosquitto uses 12).
    public init(hashing password: some Collection<UInt8>, algorithm: Algorithm, saltLength: Int = 12) {
        var generator = SystemRandomNumberGenerator()
        let salt = (0..<saltLength).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
        self.init(hashing: password, algorithm: algorithm, salt: salt)
    }

    public init(hashing password: some Collection<UInt8>, algorithm: Algorithm, salt: [UInt8]) {
        self.algorithm = algorithm
        self.salt = salt
        self.hash = Self.digest(Array(password), algorithm: algorithm, salt: salt)
    }

    /// Parses `$6$...` or `$7$...`; `nil` when the text is not one of them.
    public init?(encoded text: some StringProtocol) {
        let parts = text.split(separator: "$", omittingEmptySubsequences: false)
        // "$6$salt$hash" splits into ["", "6", salt, hash].
        guard parts.count >= 4, parts[0].isEmpty else { return nil }
        switch parts[1] {
        case "6" where parts.count == 4:
            algorithm = .sha512
        case "7" where parts.count == 5:
            guard let iterations = Int(parts[2]), iterations > 0, iterations <= 10_000_000 else { return nil }
            algorithm = .pbkdf2SHA512(iterations: iterations)
        default:
            return nil
        }
        guard let salt = Data(base64Encoded: String(parts[parts.count - 2])),
            let hash = Data(base64Encoded: String(parts[parts.count - 1])),
            !salt.isEmpty, hash.count == 64
        else { return nil }
        self.salt = Array(salt)
        self.hash = Array(hash)
    }

    /// The text a password file holds after `username:`.
    public var encoded: String {
        let salt = Data(salt).base64EncodedString()
        let hash = Data(hash).base64EncodedString()
        switch algorithm {
        case .sha512: return "$6$\(salt)$\(hash)"
        case .pbkdf2SHA512(let iterations): return "$7$\(iterations)$\(salt)$\(hash)"
        }
    }

    /// Whether `password` hashes to this hash; the comparison takes the same time wherever
    /// the bytes differ.
    public func verify(_ password: some Collection<UInt8>) -> Bool {
        let candidate = Self.digest(Array(password), algorithm: algorithm, salt: salt)
        guard candidate.count == hash.count else { return false }
        var difference: UInt8 = 0
        for index in hash.indices { difference |= candidate[index] ^ hash[index] }
        return difference == 0
    }

    private static func digest(_ password: [UInt8], algorithm: Algorithm, salt: [UInt8]) -> [UInt8] {
        switch algorithm {
        case .sha512:
            var hasher = SHA512()
            hasher.update(data: password)
            hasher.update(data: salt)
            return Array(hasher.finalize())
        case .pbkdf2SHA512(let iterations):
            // The checked `rounds:` variant refuses mosquitto's 101 iterations.
            let key = try? KDF.Insecure.PBKDF2.deriveKey(
                from: password,
                salt: salt,
                using: .sha512,
                outputByteCount: 64,
                unsafeUncheckedRounds: iterations
            )
            return key.map { $0.withUnsafeBytes { Array($0) } } ?? []
        }
    }
}

/// A mosquitto password file: `username:hash` a line, `#` comments and blank lines ignored.
public struct PasswordFile: Sendable, Hashable {
    public struct Entry: Sendable, Hashable {
        public var username: String
        public var hash: PasswordHash
    }

    /// The users in file order (the order `databus passwd` writes them back in).
    public private(set) var entries: [Entry] = []
    private var indexByUsername: [String: Int] = [:]

    public init() {}

    /// Parses password file text; `file` names it in errors.
    public init(parsing text: String, file: String = "<password file>") throws(ConfigurationError) {
        for (number, rawLine) in text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).enumerated() {
            let line = rawLine.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") { continue }
            guard let colon = line.firstIndex(of: ":"), colon != line.startIndex else {
                throw ConfigurationError(file: file, line: number + 1, key: nil, message: "expected username:hash")
            }
            // mosquitto trims both parts: "alice : $7$..." is alice's line.
            let username = line[..<colon].trimmingCharacters(in: .whitespaces)
            guard let hash = PasswordHash(encoded: line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)) else {
                throw ConfigurationError(
                    file: file,
                    line: number + 1,
                    key: nil,
                    message: "the password of \(username) is not a $6$ or $7$ hash (plain passwords: convert with databus passwd -U)"
                )
            }
            if indexByUsername[username] != nil {
                throw ConfigurationError(file: file, line: number + 1, key: nil, message: "user \(username) appears twice")
            }
            set(username, hash)
        }
    }

    /// Reads the file at `path`.
    public init(contentsOf path: String) throws(ConfigurationError) {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw ConfigurationError(file: path, line: 0, key: nil, message: "cannot read the password file: \(error.localizedDescription)")
        }
        try self.init(parsing: text, file: path)
    }

    public func hash(for username: String) -> PasswordHash? {
        indexByUsername[username].map { entries[$0].hash }
    }

    /// Whether `username` is in the file with this password.
    public func verify(username: String, password: some Collection<UInt8>) -> Bool {
        guard let hash = hash(for: username) else { return false }
        return hash.verify(password)
    }

    /// Adds `username`, or replaces its hash in place.
    public mutating func set(_ username: String, _ hash: PasswordHash) {
        if let index = indexByUsername[username] {
            entries[index].hash = hash
        } else {
            indexByUsername[username] = entries.count
            entries.append(Entry(username: username, hash: hash))
        }
    }

    /// Removes `username`; false when it was not there.
    @discardableResult
    public mutating func remove(_ username: String) -> Bool {
        guard let index = indexByUsername.removeValue(forKey: username) else { return false }
        entries.remove(at: index)
        for (position, entry) in entries.enumerated() where position >= index { indexByUsername[entry.username] = position }
        return true
    }

    /// The file's text, one `username:hash` a line.
    public var text: String {
        entries.map { "\($0.username):\($0.hash.encoded)\n" }.joined()
    }
}
