import Foundation
import NIOCore
import NIOSSL

/// The TLS client side of a bridge: `bridge_cafile`/`bridge_capath` to verify the remote
/// broker, `bridge_certfile`/`bridge_keyfile` for a client certificate, `bridge_insecure` and
/// `bridge_tls_version`, as mosquitto reads them.
enum BridgeTLS {
    /// The context for `bridge`'s connections; nil when TLS is off.
    /// - Throws: ``TLSSetupError`` naming the bridge, the key and the file that does not load.
    static func makeContext(for bridge: BridgeConfiguration) throws(TLSSetupError) -> NIOSSLContext? {
        let tls = bridge.tls
        guard tls.isEnabled else { return nil }
        func failure(_ key: String, _ message: String) -> TLSSetupError {
            TLSSetupError(listener: "bridge \(bridge.name)", key: key, message: message)
        }
        var configuration = TLSConfiguration.makeClientConfiguration()
        switch tls.minimumVersion {
        case .tls11: configuration.minimumTLSVersion = .tlsv11
        case .tls12: configuration.minimumTLSVersion = .tlsv12
        case .tls13: configuration.minimumTLSVersion = .tlsv13
        }
        configuration.certificateVerification = tls.insecure ? .noHostnameVerification : .fullVerification
        if let caFile = tls.caFile {
            do {
                let roots = try NIOSSLCertificate.fromPEMFile(caFile)
                guard !roots.isEmpty else { throw failure("bridge_cafile", "\(caFile): no certificate in the file") }
                configuration.trustRoots = .certificates(roots)
            } catch let error as TLSSetupError {
                throw error
            } catch {
                throw failure("bridge_cafile", "\(caFile): \(error)")
            }
        }
        if let caPath = tls.caPath {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: caPath, isDirectory: &isDirectory), isDirectory.boolValue else {
                throw failure("bridge_capath", "\(caPath): not a folder")
            }
            // Looked up by subject hash (`openssl rehash` names), as OpenSSL does for mosquitto.
            if tls.caFile == nil {
                configuration.trustRoots = .file(caPath)
            } else {
                configuration.additionalTrustRoots = [.file(caPath)]
            }
        }
        if let certFile = tls.certFile, let keyFile = tls.keyFile {
            do {
                let chain = try NIOSSLCertificate.fromPEMFile(certFile)
                guard !chain.isEmpty else { throw failure("bridge_certfile", "\(certFile): no certificate in the file") }
                configuration.certificateChain = chain.map { .certificate($0) }
            } catch let error as TLSSetupError {
                throw error
            } catch {
                throw failure("bridge_certfile", "\(certFile): \(error)")
            }
            do {
                configuration.privateKey = .privateKey(try NIOSSLPrivateKey(file: keyFile, format: .pem))
            } catch {
                throw failure("bridge_keyfile", "\(keyFile): \(error) (a PEM key without a passphrase is needed)")
            }
        }
        do {
            return try NIOSSLContext(configuration: configuration)
        } catch {
            throw failure(tls.certFile != nil ? "bridge_keyfile" : "bridge_cafile", "\(error)")
        }
    }

    /// The name to send as SNI and to verify: none for an IP address (NIOSSL then checks the
    /// address against the certificate).
    static func serverHostname(_ host: String) -> String? {
        (try? SocketAddress(ipAddress: host, port: 0)) != nil ? nil : host
    }
}
