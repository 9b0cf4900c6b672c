import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Reading and writing the files of a certificate folder: new files never replace old ones
/// by accident, replaced files go through a rename, and keys are never readable by others.
extension CertificateDirectory {
    func read(_ file: String) throws(CertificateToolError) -> String {
        guard let data = FileManager.default.contents(atPath: file) else { throw CertificateToolError("\(file): cannot read the file") }
        return String(decoding: data, as: UTF8.self)
    }

    func makeFolder(_ folder: String, mode: mode_t) throws(CertificateToolError) {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: folder, isDirectory: &isDirectory) {
            guard isDirectory.boolValue else { throw CertificateToolError("\(folder) exists and is not a folder") }
            return
        }
        guard mkdir(folder, mode) == 0 else {
            throw CertificateToolError("cannot create \(folder): \(String(cString: strerror(errno)))")
        }
        chmod(folder, mode)  // mkdir applies the umask
    }

    /// Writes a file that must not exist yet, with `mode` from the start (no window in which
    /// a key is readable by others).
    static func writeNew(_ file: String, _ contents: String, mode: mode_t) throws(CertificateToolError) {
        let descriptor = open(file, O_WRONLY | O_CREAT | O_EXCL, mode)
        guard descriptor >= 0 else {
            throw CertificateToolError("cannot create \(file): \(String(cString: strerror(errno)))")
        }
        defer { close(descriptor) }
        fchmod(descriptor, mode)  // open applies the umask
        let bytes = Array(contents.utf8)
        var written = 0
        while written < bytes.count {
            let result = bytes[written...].withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
            guard result > 0 else { throw CertificateToolError("cannot write \(file): \(String(cString: strerror(errno)))") }
            written += result
        }
        guard fsync(descriptor) == 0 else { throw CertificateToolError("cannot write \(file): \(String(cString: strerror(errno)))") }
    }

    /// Writes `file` whole or not at all: through a new temporary file and a rename, so a
    /// broker reloading at that moment reads the old file or the new one, never half of one.
    static func replace(_ file: String, _ contents: String, mode: mode_t) throws(CertificateToolError) {
        let temporary = file + ".tmp-\(getpid())"
        unlink(temporary)
        try Self.writeNew(temporary, contents, mode: mode)
        guard rename(temporary, file) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(temporary)
            throw CertificateToolError("cannot replace \(file): \(reason)")
        }
    }

    /// Runs `body` while holding the CA folder's lock, so that two `databus certs` runs never
    /// issue or revoke at once and lose each other's index lines.
    func withLock<Result>(_ body: () throws -> Result) throws -> Result {
        let lockFile = caFolder + "/.lock"
        let descriptor = open(lockFile, O_RDWR | O_CREAT, 0o600)
        guard descriptor >= 0 else {
            throw CertificateToolError("cannot open \(lockFile): \(String(cString: strerror(errno)))")
        }
        defer { close(descriptor) }
        guard flock(descriptor, LOCK_EX) == 0 else {
            throw CertificateToolError("cannot lock \(lockFile): \(String(cString: strerror(errno)))")
        }
        defer { flock(descriptor, LOCK_UN) }
        return try body()
    }
}
