/// TLS on one listener, with mosquitto's keys (always per listener, as in mosquitto).
public struct TLSSettings: Sendable, Hashable {
    /// `cafile`: PEM file of the CAs that client certificates must chain to.
    public var caFile: String?
    /// `capath`: folder of PEM CA certificates.
    public var caPath: String?
    /// `certfile`: the broker's PEM certificate (chain).
    public var certFile: String?
    /// `keyfile`: the broker's PEM private key.
    public var keyFile: String?
    /// `require_certificate`: refuse clients without a valid client certificate.
    public var requireCertificate = false
    /// `use_identity_as_username`: the client certificate's CN becomes the username.
    public var useIdentityAsUsername = false
    /// `use_subject_as_username`: the certificate's whole subject becomes the username.
    public var useSubjectAsUsername = false
    /// `tls_version`: the lowest version accepted; TLS 1.2 unless set.
    public var minimumVersion: Version = .tls12
    /// `ciphers`: OpenSSL cipher list for TLS 1.2.
    public var ciphers: String?
    /// `ciphers_tls1.3`: OpenSSL cipher suites for TLS 1.3.
    public var ciphersTLS13: String?
    /// `crlfile`: PEM certificate revocation list checked for client certificates.
    public var crlFile: String?

    public enum Version: String, Sendable, Hashable {
        /// Allowed because mosquitto allows it; TLS 1.1 is obsolete and not recommended.
        case tls11 = "tlsv1.1"
        case tls12 = "tlsv1.2"
        case tls13 = "tlsv1.3"
    }

    public init() {}

    /// A listener speaks TLS once it has a certificate; mosquitto needs `certfile` and `keyfile`.
    public var isEnabled: Bool { certFile != nil || keyFile != nil }
}

/// Who may connect and what they may do: global, or per listener with `per_listener_settings`.
public struct SecuritySettings: Sendable, Hashable {
    /// `password_file`: mosquitto's `username:hash` file.
    public var passwordFile: String?
    /// `acl_file`: mosquitto's ACL file.
    public var aclFile: String?
    /// Our `jwt_*` keys: devices that log in with a JWT as the password.
    public var jwt: JWTSettings?

    public init() {}
}

/// JWT logins (our keys; see the README): the CONNECT password is a signed token.
public struct JWTSettings: Sendable, Hashable {
    /// `jwt_keyfile`: PEM public keys (ES256, RS256) or a file holding an HS256 secret; may repeat.
    public var keyFiles: [String] = []
    /// `jwt_jwksfile`: a JSON Web Key Set file.
    public var jwksFile: String?
    /// `jwt_algorithms`: the algorithms accepted (never `none`); default ES256 and RS256.
    public var algorithms: [String] = ["ES256", "RS256"]
    /// `jwt_audience`: the `aud` a token must carry, when set.
    public var audience: String?
    /// `jwt_issuer`: the `iss` a token must carry, when set.
    public var issuer: String?
    /// `jwt_username_claim`: the claim that must equal the CONNECT username (default `sub`).
    public var usernameClaim = "sub"
    /// `jwt_clock_skew`: seconds of leeway on `exp` and `nbf` (default 30).
    public var clockSkew = 30

    public init() {}
}
