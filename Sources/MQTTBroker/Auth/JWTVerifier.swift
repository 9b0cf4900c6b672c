import Crypto
import Foundation
import JWTKit
import MQTTCore
import _CryptoExtras

/// Checks a JWT presented as the CONNECT password: the signature with a configured key
/// (ES256, RS256, HS256; never `none`), `exp` and `nbf` with the configured clock skew,
/// `aud` and `iss` when configured, and the claim that must equal the username.
final class JWTVerifier: Sendable {
    /// Keys from `jwt_keyfile`, one collection per algorithm so a token signed with one
    /// algorithm is never checked against a key meant for another.
    private let keysByAlgorithm: [String: JWTKeyCollection]
    /// Keys from `jwt_jwksfile`, chosen by the token's `kid`.
    private let keySet: JWTKeyCollection?
    private let settings: JWTSettings

    /// The outcome for one token.
    enum Outcome: Sendable, Equatable {
        case accepted(username: String)
        case refused(ReasonCode, why: String)
    }

    init(settings: JWTSettings) async throws(ConfigurationError) {
        self.settings = settings
        var keysByAlgorithm: [String: JWTKeyCollection] = [:]
        func failure(_ path: String, _ message: String) -> ConfigurationError {
            ConfigurationError(file: path, line: 0, key: "jwt_keyfile", message: message)
        }
        for path in settings.keyFiles {
            let text: String
            do {
                text = try String(contentsOfFile: path, encoding: .utf8)
            } catch {
                throw failure(path, "cannot read the key: \(error.localizedDescription)")
            }
            if text.contains("-----BEGIN PUBLIC KEY-----") {
                if let key = try? ES256PublicKey(pem: text) {
                    guard settings.algorithms.contains("ES256") else {
                        throw failure(path, "an ES256 key, but jwt_algorithms does not list ES256")
                    }
                    let keys = keysByAlgorithm["ES256"] ?? JWTKeyCollection()
                    await keys.add(ecdsa: key, kid: JWKIdentifier(string: path))
                    keysByAlgorithm["ES256"] = keys
                } else if let key = try? Insecure.RSA.PublicKey(pem: text) {
                    guard settings.algorithms.contains("RS256") else {
                        throw failure(path, "an RSA key, but jwt_algorithms does not list RS256")
                    }
                    let keys = keysByAlgorithm["RS256"] ?? JWTKeyCollection()
                    await keys.add(rsa: key, digestAlgorithm: .sha256, kid: JWKIdentifier(string: path))
                    keysByAlgorithm["RS256"] = keys
                } else {
                    throw failure(path, "not a P-256 or RSA (2048 bits or more) public key in PEM")
                }
            } else if text.contains("-----BEGIN") {
                throw failure(path, "expected a PEM public key (BEGIN PUBLIC KEY) or an HS256 secret")
            } else {
                let secret = Array(text.trimmingCharacters(in: .whitespacesAndNewlines).utf8)
                guard settings.algorithms.contains("HS256") else {
                    throw failure(path, "a shared secret, but jwt_algorithms does not list HS256")
                }
                guard secret.count >= 32 else {
                    throw failure(path, "an HS256 secret must be at least 32 bytes, this one has \(secret.count)")
                }
                let keys = keysByAlgorithm["HS256"] ?? JWTKeyCollection()
                await keys.add(hmac: HMACKey(from: secret), digestAlgorithm: .sha256, kid: JWKIdentifier(string: path))
                keysByAlgorithm["HS256"] = keys
            }
        }
        self.keysByAlgorithm = keysByAlgorithm
        if let path = settings.jwksFile {
            do {
                let json = try String(contentsOfFile: path, encoding: .utf8)
                keySet = try await JWTKeyCollection().add(jwksJSON: json)
            } catch {
                throw ConfigurationError(file: path, line: 0, key: "jwt_jwksfile", message: "not a usable JSON Web Key Set: \(error)")
            }
        } else {
            keySet = nil
        }
        if keysByAlgorithm.isEmpty && keySet == nil {
            throw ConfigurationError(file: "<configuration>", line: 0, key: "jwt_keyfile", message: "JWT settings need jwt_keyfile or jwt_jwksfile")
        }
    }

    /// Whether `token` admits a client that gave `username` (nil: the claim becomes the username).
    func verify(_ token: String, username: String?, now: Date = Date()) async -> Outcome {
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, let header = Self.decodeJSONObject(parts[0]) else {
            return .refused(.badUserNameOrPassword, why: "the password is not a JWT")
        }
        guard let algorithm = header["alg"] as? String else {
            return .refused(.badUserNameOrPassword, why: "the JWT header has no alg")
        }
        guard algorithm != "none", settings.algorithms.contains(algorithm) else {
            return .refused(
                .badUserNameOrPassword,
                why: "JWT algorithm \(algorithm) is not accepted (jwt_algorithms: \(settings.algorithms.joined(separator: ",")))"
            )
        }
        let keys: JWTKeyCollection
        if header["kid"] is String, let keySet {
            keys = keySet
        } else if let forAlgorithm = keysByAlgorithm[algorithm] {
            keys = forAlgorithm
        } else if let keySet {
            keys = keySet
        } else {
            return .refused(.badUserNameOrPassword, why: "no key configured for JWT algorithm \(algorithm)")
        }
        let claims: DeviceClaims
        do {
            claims = try await keys.verify(token, as: DeviceClaims.self, iteratingKeys: true)
        } catch {
            return .refused(.badUserNameOrPassword, why: "the JWT signature does not verify with the configured keys")
        }
        let skew = TimeInterval(settings.clockSkew)
        guard let expiration = claims.expiration else {
            return .refused(.badUserNameOrPassword, why: "the JWT has no exp claim")
        }
        if expiration < now.addingTimeInterval(-skew) {
            return .refused(.badUserNameOrPassword, why: "the JWT expired at \(Self.format(expiration))")
        }
        if let notBefore = claims.notBefore, notBefore > now.addingTimeInterval(skew) {
            return .refused(.badUserNameOrPassword, why: "the JWT is not valid before \(Self.format(notBefore))")
        }
        if let audience = settings.audience, !claims.audiences.contains(audience) {
            return .refused(.notAuthorized, why: "the JWT audience \(claims.audiences) does not include \(audience)")
        }
        if let issuer = settings.issuer, claims.issuer != issuer {
            return .refused(.notAuthorized, why: "the JWT issuer \(claims.issuer ?? "(none)") is not \(issuer)")
        }
        guard let identity = claims.strings[settings.usernameClaim] else {
            return .refused(.notAuthorized, why: "the JWT has no \(settings.usernameClaim) claim")
        }
        if let username, username != identity {
            return .refused(.notAuthorized, why: "the username \(username) does not match the JWT's \(settings.usernameClaim) \(identity)")
        }
        return .accepted(username: identity)
    }

    private static func format(_ date: Date) -> String {
        ISO8601DateFormatter().string(from: date)
    }

    private static func decodeJSONObject(_ part: Substring) -> [String: Any]? {
        var base64 = part.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while base64.count % 4 != 0 { base64.append("=") }
        guard let data = Data(base64Encoded: base64) else { return nil }
        return (try? JSONSerialization.jsonObject(with: data)) as? [String: Any]
    }
}

/// The claims a device token carries; the time checks are ours (with clock skew), so
/// `verify(using:)` has nothing left to do.
private struct DeviceClaims: JWTPayload {
    var expiration: Date?
    var notBefore: Date?
    var audiences: [String] = []
    var issuer: String?
    /// Every top-level string claim, for the configured username claim.
    var strings: [String: String] = [:]

    private struct Key: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: Key.self)
        for key in container.allKeys {
            if let text = try? container.decode(String.self, forKey: key) { strings[key.stringValue] = text }
        }
        func seconds(_ name: String) throws -> Date? {
            let key = Key(stringValue: name)
            guard container.contains(key) else { return nil }
            return Date(timeIntervalSince1970: try container.decode(Double.self, forKey: key))
        }
        expiration = try seconds("exp")
        notBefore = try seconds("nbf")
        issuer = strings["iss"]
        let audienceKey = Key(stringValue: "aud")
        if let single = try? container.decode(String.self, forKey: audienceKey) {
            audiences = [single]
        } else if let many = try? container.decode([String].self, forKey: audienceKey) {
            audiences = many
        }
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: Key.self)
        for (name, value) in strings { try container.encode(value, forKey: Key(stringValue: name)) }
    }

    func verify(using algorithm: some JWTAlgorithm) async throws {}
}
