import Foundation

/// What `databus certs create` issues: the broker's host names and IP addresses, one client
/// certificate per component, the validity and the key type.
///
/// Read from flags, or from a JSON file (`--request FILE`) with the same fields:
/// `{"hosts": ["broker.lan"], "ips": ["10.0.0.5"], "clients": ["backend", "ai-engine"], "days": 825, "rsa": false}`.
public struct CertificateRequest: Sendable, Hashable {
    /// DNS names of the broker (subject alternative names of its certificate).
    public var hosts: [String]
    /// IP addresses of the broker (subject alternative names of its certificate).
    public var ips: [String]
    /// One client certificate per name, with the name as CN (and folder name).
    public var clients: [String]
    /// Validity of the certificates issued now, in days (default ``defaultDays``).
    public var days: Int?
    /// RSA 2048 keys instead of ECDSA P-256.
    public var rsa: Bool?

    /// Validity of leaf certificates when no `days` is given.
    public static let defaultDays = 825
    /// Broker names when neither hosts nor IPs are given.
    public static let defaultHosts = ["localhost"]
    public static let defaultIPs = ["127.0.0.1", "::1"]

    public init(hosts: [String] = [], ips: [String] = [], clients: [String] = [], days: Int? = nil, rsa: Bool? = nil) {
        self.hosts = hosts
        self.ips = ips
        self.clients = clients
        self.days = days
        self.rsa = rsa
    }

    /// The broker's DNS names: those given, or `localhost` when neither names nor IPs are.
    public var brokerHosts: [String] { hosts.isEmpty && ips.isEmpty ? Self.defaultHosts : hosts }
    /// The broker's IPs: those given, or 127.0.0.1 and ::1 when neither names nor IPs are.
    public var brokerIPs: [String] { hosts.isEmpty && ips.isEmpty ? Self.defaultIPs : ips }
    public var validityDays: Int { days ?? Self.defaultDays }
    public var keyType: CertificateKeyType { rsa == true ? .rsa2048 : .ecdsaP256 }

    /// This request with `other`'s names added and its `days` and `rsa` taking precedence.
    public func merged(with other: CertificateRequest) -> CertificateRequest {
        func union(_ first: [String], _ second: [String]) -> [String] {
            var seen = Set<String>()
            return (first + second).filter { seen.insert($0).inserted }
        }
        return CertificateRequest(
            hosts: union(hosts, other.hosts),
            ips: union(ips, other.ips),
            clients: union(clients, other.clients),
            days: other.days ?? days,
            rsa: other.rsa ?? rsa
        )
    }

    /// Parses a JSON request; unknown fields are an error, so a typo cannot drop a client.
    public static func read(json data: Data) throws(CertificateToolError) -> CertificateRequest {
        guard let fields = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw CertificateToolError("the request must be a JSON object")
        }
        let known = Set(Fields.CodingKeys.allCases.map(\.rawValue))
        if let unknown = fields.keys.sorted().first(where: { !known.contains($0) }) {
            throw CertificateToolError("unknown field \"\(unknown)\" in the request (fields: \(known.sorted().joined(separator: ", ")))")
        }
        do {
            let decoded = try JSONDecoder().decode(Fields.self, from: data)
            return CertificateRequest(
                hosts: decoded.hosts ?? [],
                ips: decoded.ips ?? [],
                clients: decoded.clients ?? [],
                days: decoded.days,
                rsa: decoded.rsa
            )
        } catch let DecodingError.typeMismatch(_, context), let DecodingError.valueNotFound(_, context) {
            let field = context.codingPath.first?.stringValue ?? "?"
            throw CertificateToolError("\"\(field)\" has the wrong type (hosts, ips, clients: lists of strings; days: a number; rsa: true or false)")
        } catch {
            throw CertificateToolError("the request cannot be read: \(error)")
        }
    }

    /// The JSON form.
    private struct Fields: Decodable {
        var hosts: [String]?
        var ips: [String]?
        var clients: [String]?
        var days: Int?
        var rsa: Bool?

        enum CodingKeys: String, CodingKey, CaseIterable {
            case hosts, ips, clients, days, rsa
        }
    }

    /// Reads a JSON request file.
    public static func read(file path: String) throws(CertificateToolError) -> CertificateRequest {
        guard let data = FileManager.default.contents(atPath: path) else { throw CertificateToolError("\(path): cannot read the file") }
        do {
            return try read(json: data)
        } catch {
            throw CertificateToolError("\(path): \(error.description)")
        }
    }
}

/// The key pair type of issued certificates.
public enum CertificateKeyType: String, Sendable, Hashable {
    case ecdsaP256 = "ECDSA P-256"
    case rsa2048 = "RSA 2048"
}

/// Why `databus certs` cannot do what was asked.
public struct CertificateToolError: Error, Hashable, Sendable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
