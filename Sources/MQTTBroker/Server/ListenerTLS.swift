import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOSSL
import X509

/// A TLS listener that cannot start, or a reload that keeps the previous files: names the
/// listener, the key and the file.
public struct TLSSetupError: Error, Hashable, Sendable, CustomStringConvertible {
    public let listener: String
    /// The mosquitto key whose file is at fault (`certfile`, `crlfile`, ...), if one is.
    public let key: String?
    public let message: String

    public var description: String {
        key.map { "\(listener): \($0): \(message)" } ?? "\(listener): \(message)"
    }
}

/// The TLS side of one listener: the `NIOSSLContext` (and revocation lists) that new
/// connections use.
///
/// Built from the listener's files when the broker starts and again on every reload, so
/// renewed certificates, keys, CAs and CRLs apply to the next connection while connections
/// already open keep the context they started with. A reload whose files do not load keeps
/// the previous context.
final class ListenerTLS: Sendable {
    /// Everything one generation of the listener's files gives.
    struct Loaded: Sendable {
        let context: NIOSSLContext
        let revocation: RevocationChecker?
        /// The broker's own certificate (first of `certfile`), for log lines.
        let certificate: Certificate?
        /// The CAs of `cafile` and `capath` (for the expiry metric and revocation lists).
        let authorities: [Certificate]
        /// Whether clients must present a certificate (`require_certificate true`).
        let verifiesClients: Bool
        /// Settings that could not be applied exactly, to log.
        let warnings: [String]
    }

    let name: String
    private let current: NIOLockedValueBox<Loaded>
    /// Connections whose client certificate verified, for a reload to check against a new `crlfile`.
    let clients = TLSClientRegistry()

    /// Loads the listener's files.
    /// - Throws: ``TLSSetupError`` naming the key and file that failed.
    init(name: String, settings: TLSSettings) throws(TLSSetupError) {
        self.name = name
        self.current = NIOLockedValueBox(try Self.load(settings, name: name))
    }

    /// What new connections use now.
    var loaded: Loaded { current.withLockedValue { $0 } }

    /// Re-reads the files of `settings`; on failure the previous context stays in use.
    @discardableResult
    func reload(_ settings: TLSSettings) throws(TLSSetupError) -> Loaded {
        let loaded = try Self.load(settings, name: name)
        current.withLockedValue { $0 = loaded }
        return loaded
    }

    /// The TLS handler for a new connection, with the context in force now.
    func makeServerHandler() -> NIOSSLServerHandler {
        let loaded = self.loaded
        guard loaded.verifiesClients else { return NIOSSLServerHandler(context: loaded.context) }
        // Runs once BoringSSL has verified the chain: the client is tracked (a later reload may
        // revoke it), and the leaf must not be revoked now.
        return NIOSSLServerHandler._makeSSLServerHandler(context: loaded.context) { [self] peer, channel in
            do {
                let certificate = try Certificate(derEncoded: peer.toDERBytes())
                // Tracked first, checked against the lists in force after: a reload that swaps
                // the lists in between either sees this client or was seen by this check.
                clients.add(channel, certificate: certificate)
                if let why = self.loaded.revocation?.refusal(for: certificate, now: Date()) {
                    return channel.eventLoop.makeFailedFuture(ClientCertificateRevokedError(reason: why))
                }
                return channel.eventLoop.makeSucceededVoidFuture()
            } catch {
                return channel.eventLoop.makeFailedFuture(ClientCertificateRevokedError(reason: "unreadable client certificate: \(error)"))
            }
        }
    }

    /// Connected clients whose certificate the revocation lists in force now refuse.
    func refusedClients(now: Date = Date()) -> [(client: TLSClientRegistry.Client, reason: String)] {
        guard let revocation = loaded.revocation else { return [] }
        return clients.refused(by: revocation, now: now)
    }

    // MARK: Loading

    static func load(_ settings: TLSSettings, name: String) throws(TLSSetupError) -> Loaded {
        func failure(_ key: String?, _ message: String) -> TLSSetupError {
            TLSSetupError(listener: name, key: key, message: message)
        }
        guard let certFile = settings.certFile, let keyFile = settings.keyFile else {
            throw failure(nil, "TLS needs both certfile and keyfile")
        }
        var warnings: [String] = []

        let chain: [NIOSSLCertificate]
        do {
            try checkReadable(certFile)
            chain = try NIOSSLCertificate.fromPEMFile(certFile)
        } catch {
            throw failure("certfile", "\(certFile): \(describe(error))")
        }
        guard !chain.isEmpty else { throw failure("certfile", "\(certFile): no certificate in the file") }
        let key: NIOSSLPrivateKey
        do {
            try checkReadable(keyFile)
            key = try NIOSSLPrivateKey(file: keyFile, format: .pem)
        } catch {
            throw failure("keyfile", "\(keyFile): \(describe(error)) (a PEM key without a passphrase is needed)")
        }

        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: chain.map { .certificate($0) },
            privateKey: .privateKey(key)
        )
        switch settings.minimumVersion {
        case .tls11: configuration.minimumTLSVersion = .tlsv11
        case .tls12: configuration.minimumTLSVersion = .tlsv12
        case .tls13: configuration.minimumTLSVersion = .tlsv13
        }
        if let ciphers = settings.ciphers {
            do {
                let resolved = try TLSCipherList(ciphers)
                configuration.cipherSuites = resolved.suites.joined(separator: ":")
                warnings += resolved.warnings.map { "ciphers: \($0)" }
            } catch {
                throw failure("ciphers", error.description)
            }
        }
        if let suites = settings.ciphersTLS13 {
            switch tls13SuitesWarnings(suites) {
            case .success(let found): warnings += found
            case .failure(let problem): throw failure("ciphers_tls1.3", problem.description)
            }
        }

        // As mosquitto: without require_certificate the broker asks for no client certificate.
        var authorities: [Certificate] = []
        if settings.requireCertificate {
            var roots: [NIOSSLCertificate] = []
            if let caFile = settings.caFile {
                do {
                    try checkReadable(caFile)
                    roots = try NIOSSLCertificate.fromPEMFile(caFile)
                } catch {
                    throw failure("cafile", "\(caFile): \(describe(error))")
                }
                guard !roots.isEmpty else { throw failure("cafile", "\(caFile): no certificate in the file") }
                authorities += roots.compactMap { try? Certificate(derEncoded: $0.toDERBytes()) }
                configuration.trustRoots = .certificates(roots)
            }
            if let caPath = settings.caPath {
                var isDirectory: ObjCBool = false
                guard FileManager.default.fileExists(atPath: caPath, isDirectory: &isDirectory), isDirectory.boolValue else {
                    throw failure("capath", "\(caPath): not a folder")
                }
                authorities += certificates(inFolder: caPath)
                // BoringSSL looks CAs up by subject hash (c_rehash names), as OpenSSL does for mosquitto.
                if settings.caFile == nil {
                    configuration.trustRoots = .file(caPath)
                } else {
                    configuration.additionalTrustRoots = [.file(caPath)]
                }
            }
            guard settings.caFile != nil || settings.caPath != nil else {
                throw failure("require_certificate", "client certificates need cafile or capath")
            }
            configuration.certificateVerification = .noHostnameVerification
        } else {
            configuration.certificateVerification = .none
            if settings.crlFile != nil {
                warnings.append("crlfile is only used with require_certificate true")
            }
            // Not used for TLS then, but its expiry is still worth watching.
            if let caFile = settings.caFile, let roots = try? NIOSSLCertificate.fromPEMFile(caFile) {
                authorities += roots.compactMap { try? Certificate(derEncoded: $0.toDERBytes()) }
            }
        }

        var revocation: RevocationChecker?
        if let crlFile = settings.crlFile, settings.requireCertificate {
            do {
                revocation = try RevocationChecker(file: crlFile, authorities: authorities)
            } catch {
                throw failure("crlfile", "\(crlFile): \(describe(error))")
            }
        }

        let context: NIOSSLContext
        do {
            context = try NIOSSLContext(configuration: configuration)
        } catch {
            throw failure(nil, "cannot set up TLS with certfile and keyfile: \(describe(error))")
        }
        let certificate = try? Certificate(derEncoded: chain[0].toDERBytes())
        return Loaded(
            context: context,
            revocation: revocation,
            certificate: certificate,
            authorities: authorities,
            verifiesClients: settings.requireCertificate,
            warnings: warnings
        )
    }

    private static func checkReadable(_ path: String) throws {
        guard FileManager.default.isReadableFile(atPath: path) else {
            throw FileProblem(
                FileManager.default.fileExists(atPath: path) ? "the file is not readable" : "no such file"
            )
        }
    }

    /// Every PEM certificate of the files in `folder` (hash links and plain files alike).
    private static func certificates(inFolder folder: String) -> [Certificate] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []
        var found: Set<Certificate> = []
        for name in names {
            guard let text = try? String(contentsOfFile: folder + "/" + name, encoding: .utf8),
                let certificates = try? NIOSSLCertificate.fromPEMBytes(Array(text.utf8))
            else { continue }
            for certificate in certificates {
                if let parsed = try? Certificate(derEncoded: certificate.toDERBytes()) { found.insert(parsed) }
            }
        }
        return Array(found)
    }

    /// The TLS 1.3 suites BoringSSL offers; it has no way to restrict them.
    private static let boringSSLSuites: Set<String> = ["TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"]
    private static let openSSLSuites: Set<String> = boringSSLSuites.union(["TLS_AES_128_CCM_SHA256", "TLS_AES_128_CCM_8_SHA256"])

    /// `ciphers_tls1.3`: names OpenSSL would refuse are an error; a list that differs from
    /// what BoringSSL offers is a warning (the listener still offers BoringSSL's three).
    private static func tls13SuitesWarnings(_ list: String) -> Result<[String], FileProblem> {
        let names = list.split(separator: ":").map(String.init)
        if let unknown = names.first(where: { !openSSLSuites.contains($0) }) {
            return .failure(.init("\(unknown) is not a TLS 1.3 cipher suite (\(openSSLSuites.sorted().joined(separator: ", ")))"))
        }
        guard Set(names) != boringSSLSuites else { return .success([]) }
        return .success([
            "ciphers_tls1.3 is not applied: TLS 1.3 connections may use \(boringSSLSuites.sorted().joined(separator: ", ")) (BoringSSL cannot restrict them); use tls_version tlsv1.2 with ciphers to control the suites"
        ])
    }

    private static func describe(_ error: any Error) -> String {
        if let error = error as? NIOSSLError {
            switch error {
            case .failedToLoadCertificate: return "not a PEM certificate"
            case .failedToLoadPrivateKey: return "not a PEM private key"
            case .noSuchFilesystemObject: return "no such file"
            default: return "\(error)"
            }
        }
        if let error = error as? BoringSSLError { return TLSHandshakeFailure.reasons(of: error) }
        return "\(error)"
    }
}

/// A verified client certificate refused by the listener's `crlfile`.
struct ClientCertificateRevokedError: Error, CustomStringConvertible {
    let reason: String
    var description: String { reason }
}

/// A file that cannot be used, before the error names its key.
private struct FileProblem: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
