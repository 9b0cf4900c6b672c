import Crypto
import NIOCore
import NIOSSL

extension MQTTClient {
    /// How the client sets up TLS (1.2 at least) and decides to trust the broker.
    public struct TLS: Sendable, Hashable {
        /// Which certificate authorities the client trusts.
        public enum Trust: Sendable, Hashable {
            /// The operating system's trust store.
            case systemDefault
            /// The CA certificates (PEM) in this file, or in this folder of certificates named by
            /// their subject hash (as `openssl rehash` makes them, mosquitto's `--capath`).
            case caFile(String)
        }

        /// Which certificate authorities the client trusts.
        public var trust: Trust
        /// The client certificate (PEM, chain allowed) for mutual TLS.
        public var certificateFile: String?
        /// The client certificate's private key (PEM).
        public var privateKeyFile: String?
        /// Check that the broker's certificate names the host connected to (on by default).
        public var verifiesHostname: Bool
        /// Turns every certificate check off. Logged as a warning on each connection; with a
        /// ``pinnedServerCertificateSHA256`` the pin is still checked.
        public var insecure: Bool
        /// The SHA-256 of the broker's certificate (DER), checked before CONNECT is sent.
        public var pinnedServerCertificateSHA256: [UInt8]?
        /// The name sent in SNI and checked against the certificate, when it differs from the host.
        public var serverName: String?

        /// - Parameters:
        ///   - trust: the trusted CAs; the system trust store by default.
        ///   - certificateFile: the client certificate (PEM) for mutual TLS.
        ///   - privateKeyFile: its private key (PEM).
        ///   - pinnedServerCertificateSHA256: the SHA-256 of the broker's certificate, to pin it.
        public init(
            trust: Trust = .systemDefault,
            certificateFile: String? = nil,
            privateKeyFile: String? = nil,
            pinnedServerCertificateSHA256: [UInt8]? = nil
        ) {
            self.trust = trust
            self.certificateFile = certificateFile
            self.privateKeyFile = privateKeyFile
            self.verifiesHostname = true
            self.insecure = false
            self.pinnedServerCertificateSHA256 = pinnedServerCertificateSHA256
            self.serverName = nil
        }

        /// Parses a pin written as hex, with or without `:` between bytes (as `openssl x509 -fingerprint -sha256` prints it).
        public static func sha256Pin(hex: String) -> [UInt8]? {
            let digits = Array(hex.lowercased().utf8.filter { $0 != UInt8(ascii: ":") })
            guard digits.count == 64 else { return nil }
            var bytes: [UInt8] = []
            for index in stride(from: 0, to: 64, by: 2) {
                guard let byte = UInt8(String(decoding: digits[index..<index + 2], as: UTF8.self), radix: 16) else { return nil }
                bytes.append(byte)
            }
            return bytes
        }

        /// The SHA-256 of a certificate (DER), as ``pinnedServerCertificateSHA256`` holds it (swift-crypto).
        static func sha256(ofCertificate der: [UInt8]) -> [UInt8] {
            Array(SHA256.hash(data: der))
        }

        /// Builds the NIOSSL context; reads the files each time, so renewed certificates are picked up.
        func makeContext() throws(MQTTClientError) -> NIOSSLContext {
            var configuration = TLSConfiguration.makeClientConfiguration()
            configuration.minimumTLSVersion = .tlsv12
            switch trust {
            case .systemDefault: configuration.trustRoots = .default
            case .caFile(let path): configuration.trustRoots = .file(path)
            }
            if insecure {
                configuration.certificateVerification = .none
            } else {
                configuration.certificateVerification = verifiesHostname ? .fullVerification : .noHostnameVerification
            }
            do {
                if let certificateFile {
                    configuration.certificateChain = try NIOSSLCertificate.fromPEMFile(certificateFile).map { .certificate($0) }
                }
                if let privateKeyFile {
                    configuration.privateKey = .privateKey(try NIOSSLPrivateKey(file: privateKeyFile, format: .pem))
                }
                return try NIOSSLContext(configuration: configuration)
            } catch {
                throw MQTTClientError(.tlsConfiguration, "\(error)")
            }
        }
    }
}
