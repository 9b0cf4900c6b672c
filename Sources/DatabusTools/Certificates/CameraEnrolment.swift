import Foundation
import LPRModel
import MQTTBroker

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// What `databus certs enrol` gives a new camera besides its folder: the ACL lines that let
/// every camera read and write only its own topics, and a password-file line for cameras
/// that cannot use client certificates.
public enum CameraEnrolment {
    /// The `pattern` lines of the LPR protocol's camera topics, `%u` being the camera's
    /// username (its certificate's CN with `use_identity_as_username`, or its password-file
    /// name), which must also be its camera id in the topics.
    public static var aclLines: [String] {
        let camera = "%u"
        let writes: [LPRTopic] = [
            .detection(camera: camera), .health(camera: camera), .config(camera: camera), .configRequest(camera: camera),
            .controlResponse(camera: camera), .status(camera: camera), .blacklistRequest,
        ]
        let reads: [LPRTopic] = [
            .detectionAck(camera: camera), .healthRequest(camera: camera), .configUpdate(camera: camera), .control(camera: camera),
            .blacklistUpdates,
        ]
        return writes.map { "pattern write \($0.name)" } + reads.map { "pattern read \($0.name)" }
    }

    /// The comment written above the lines in an ACL file.
    static let aclComment = "# LPR cameras (databus certs enrol): each camera reads and writes only its own topics; %u is its username and camera id"

    /// Adds the camera lines that `file` lacks (creating it, readable by the broker's user).
    /// - Returns: the lines added; empty when the file had them all (a camera enrolled before).
    public static func addACLLines(to file: String) throws -> [String] {
        var existing = ""
        var mode: mode_t = 0o644
        if FileManager.default.fileExists(atPath: file) {
            guard let data = FileManager.default.contents(atPath: file) else { throw CertificateToolError("\(file): cannot read the file") }
            existing = String(decoding: data, as: UTF8.self)
            var status = stat()
            if stat(file, &status) == 0 { mode = status.st_mode & 0o7777 }
        }
        let present = Set(existing.split(whereSeparator: \.isNewline).map { $0.split(whereSeparator: \.isWhitespace).joined(separator: " ") })
        let missing = aclLines.filter { !present.contains($0) }
        guard !missing.isEmpty else { return [] }
        var text = existing
        if !text.isEmpty && !text.hasSuffix("\n") { text += "\n" }
        if !text.isEmpty { text += "\n" }
        if !present.contains(aclComment) { text += aclComment + "\n" }
        text += missing.joined(separator: "\n") + "\n"
        try CertificateDirectory.replace(file, text, mode: mode)
        return missing
    }

    /// The password-file line for `username` (`username:$7$...`, as mosquitto_passwd writes).
    public static func passwordLine(username: String, password: String) throws -> String {
        try PasswordFileTool.validate(username: username)
        try PasswordFileTool.validate(password: password)
        return
            "\(username):\(PasswordHash(hashing: Array(password.utf8), algorithm: .pbkdf2SHA512(iterations: PasswordHash.defaultIterations)).encoded)"
    }

    /// Adds `username` to the password file `file` (created when missing), or changes its password.
    public static func setPassword(username: String, password: String, in file: String) throws {
        try PasswordFileTool.validate(username: username)
        try PasswordFileTool.validate(password: password)
        var passwords = FileManager.default.fileExists(atPath: file) ? try PasswordFileTool.read(file) : PasswordFile()
        passwords.set(username, PasswordHash(hashing: Array(password.utf8), algorithm: .pbkdf2SHA512(iterations: PasswordHash.defaultIterations)))
        try PasswordFileTool.write(passwords, to: file)
    }
}

extension CertificateDirectory {
    /// What an `enrol` run did.
    public struct EnrolmentReport: Sendable {
        public let component: Component
        /// Whether a client certificate is in the folder (false with `--no-certificate`).
        public let hasCertificate: Bool
        public let notes: [String]
    }

    /// Makes a camera's folder: its client certificate (unless `certificate` is false: then
    /// only the CA certificate, to check the broker's), issued by the CA in this folder.
    /// An existing folder is kept as it is.
    public func enrol(
        camera name: String,
        certificate: Bool = true,
        request: CertificateRequest = CertificateRequest(),
        now: Date = Date()
    ) throws -> EnrolmentReport {
        var wanted = request
        wanted.clients = [name]
        try Self.validate(wanted)
        let authority = try loadAuthority()
        guard authority.certificate.notValidAfter > now else {
            throw CertificateToolError("the CA in \(caFolder) expired on \(Self.day(authority.certificate.notValidAfter)): make a new CA")
        }
        let component = Component(name: name, folder: path + "/" + name, created: false)
        var notes: [String] = []
        if !certificate {
            if FileManager.default.fileExists(atPath: component.folder) {
                notes.append("\(component.folder) exists and was kept")
                return EnrolmentReport(
                    component: component,
                    hasCertificate: FileManager.default.fileExists(atPath: component.certificate),
                    notes: notes
                )
            }
            try makeFolder(component.folder, mode: 0o755)
            try Self.writeNew(component.caCertificate, try authority.certificate.serializeAsPEM().pemString + "\n", mode: 0o644)
            return EnrolmentReport(
                component: Component(name: name, folder: component.folder, created: true),
                hasCertificate: false,
                notes: notes
            )
        }
        let issued = try withLock {
            var index = try loadIndex(ca: authority.certificate)
            return try issue(
                component,
                commonName: name,
                purpose: .client,
                request: wanted,
                authority: authority,
                index: &index,
                now: now,
                notes: &notes
            )
        }
        return EnrolmentReport(component: issued, hasCertificate: FileManager.default.fileExists(atPath: component.certificate), notes: notes)
    }
}
