/// mosquitto's `ciphers` value (an OpenSSL cipher string) resolved to the explicit TLS 1.2
/// suites BoringSSL offers.
///
/// swift-nio-ssl hands the string to BoringSSL and stops the process (a precondition) when
/// BoringSSL rejects it, so a typo in a configuration file, or on SIGHUP, would crash the
/// broker. This evaluates the string the way BoringSSL's rule parser does (its aliases, `!`,
/// `-`, `+`, `@STRENGTH`, a leading `DEFAULT`; unknown names are skipped) over its cipher
/// table, and gives NIOSSL only exact suite names, never an empty list.
struct TLSCipherList: Sendable {
    /// The IANA names of the suites, in preference order.
    let suites: [String]
    /// Parts of the string that BoringSSL does not know and that were left out.
    let warnings: [String]

    struct Error: Swift.Error, CustomStringConvertible {
        let description: String
    }

    init(_ rules: String) throws(Error) {
        var warnings: [String] = []
        var text = rules
        // OpenSSL's security level has no meaning in BoringSSL (which refuses the string).
        for part in rules.split(whereSeparator: { ":, ;".contains($0) }) where part.hasPrefix("@SECLEVEL=") {
            warnings.append("\(part) is OpenSSL's and is ignored")
            text = text.replacingOccurrences(of: String(part), with: "")
        }
        var state = Evaluation()
        var rest = Substring(text)
        if rest.hasPrefix("DEFAULT") {
            try state.process("ALL")
            rest = rest.dropFirst(7)
            if rest.first == ":" { rest = rest.dropFirst() }
        }
        try state.process(rest)
        warnings += state.unknown.map { "\($0) names no cipher BoringSSL has" }
        let suites = state.order.filter { state.active.contains($0) }.map { Self.table[$0].standardName }
        guard !suites.isEmpty else {
            throw Error(
                description: "\"\(rules)\" leaves no TLS 1.2 cipher suite (BoringSSL has \(Self.table.map(\.openSSLName).joined(separator: ", ")))"
            )
        }
        self.suites = suites
        self.warnings = warnings
    }

    // MARK: BoringSSL's table

    /// Bit masks as BoringSSL's `SSL_CIPHER` fields use them.
    private enum Bits {
        static let kRSA: UInt32 = 1, kECDHE: UInt32 = 2, kPSK: UInt32 = 4
        static let aRSASign: UInt32 = 1, aRSADecrypt: UInt32 = 2, aECDSA: UInt32 = 4, aPSK: UInt32 = 8
        static let des3: UInt32 = 1, aes128: UInt32 = 2, aes256: UInt32 = 4, aes128GCM: UInt32 = 8, aes256GCM: UInt32 = 16, chacha: UInt32 = 32
        static let sha1: UInt32 = 1, sha256: UInt32 = 2, aead: UInt32 = 4
        static let ssl3: UInt16 = 0x0300, tls12: UInt16 = 0x0303
    }

    private struct Suite {
        let openSSLName: String
        let standardName: String
        let keyExchange: UInt32
        let authentication: UInt32
        let encryption: UInt32
        let mac: UInt32
        /// Suites of TLS 1.2 (AEAD or SHA-256 PRF) report TLS 1.2, older ones SSL 3.
        let minimumVersion: UInt16
        let deprecated: Bool

        var strengthBits: Int {
            switch encryption {
            case Bits.des3: 112
            case Bits.aes128, Bits.aes128GCM: 128
            default: 256
            }
        }
    }

    private static func suite(
        _ openSSL: String,
        _ standard: String,
        _ kx: UInt32,
        _ auth: UInt32,
        _ enc: UInt32,
        _ mac: UInt32,
        tls12: Bool,
        deprecated: Bool = false
    ) -> Suite {
        Suite(
            openSSLName: openSSL,
            standardName: standard,
            keyExchange: kx,
            authentication: auth,
            encryption: enc,
            mac: mac,
            minimumVersion: tls12 ? Bits.tls12 : Bits.ssl3,
            deprecated: deprecated
        )
    }

    /// BoringSSL's TLS 1.2 suites in its initial order (AES-GCM, ChaCha20, then legacy).
    private static let table: [Suite] = {
        typealias B = Bits
        return [
            suite("ECDHE-ECDSA-AES128-GCM-SHA256", "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", B.kECDHE, B.aECDSA, B.aes128GCM, B.aead, tls12: true),
            suite("ECDHE-RSA-AES128-GCM-SHA256", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", B.kECDHE, B.aRSASign, B.aes128GCM, B.aead, tls12: true),
            suite("ECDHE-ECDSA-AES256-GCM-SHA384", "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", B.kECDHE, B.aECDSA, B.aes256GCM, B.aead, tls12: true),
            suite("ECDHE-RSA-AES256-GCM-SHA384", "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", B.kECDHE, B.aRSASign, B.aes256GCM, B.aead, tls12: true),
            suite(
                "ECDHE-ECDSA-CHACHA20-POLY1305",
                "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
                B.kECDHE,
                B.aECDSA,
                B.chacha,
                B.aead,
                tls12: true
            ),
            suite("ECDHE-RSA-CHACHA20-POLY1305", "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256", B.kECDHE, B.aRSASign, B.chacha, B.aead, tls12: true),
            suite("ECDHE-PSK-CHACHA20-POLY1305", "TLS_ECDHE_PSK_WITH_CHACHA20_POLY1305_SHA256", B.kECDHE, B.aPSK, B.chacha, B.aead, tls12: true),
            suite("ECDHE-ECDSA-AES128-SHA", "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA", B.kECDHE, B.aECDSA, B.aes128, B.sha1, tls12: false),
            suite("ECDHE-RSA-AES128-SHA", "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA", B.kECDHE, B.aRSASign, B.aes128, B.sha1, tls12: false),
            suite("ECDHE-PSK-AES128-CBC-SHA", "TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA", B.kECDHE, B.aPSK, B.aes128, B.sha1, tls12: false),
            suite("ECDHE-ECDSA-AES256-SHA", "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA", B.kECDHE, B.aECDSA, B.aes256, B.sha1, tls12: false),
            suite("ECDHE-RSA-AES256-SHA", "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA", B.kECDHE, B.aRSASign, B.aes256, B.sha1, tls12: false),
            suite("ECDHE-PSK-AES256-CBC-SHA", "TLS_ECDHE_PSK_WITH_AES_256_CBC_SHA", B.kECDHE, B.aPSK, B.aes256, B.sha1, tls12: false),
            suite(
                "ECDHE-ECDSA-AES128-SHA256",
                "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256",
                B.kECDHE,
                B.aECDSA,
                B.aes128,
                B.sha256,
                tls12: true,
                deprecated: true
            ),
            suite(
                "ECDHE-RSA-AES128-SHA256",
                "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
                B.kECDHE,
                B.aRSASign,
                B.aes128,
                B.sha256,
                tls12: true,
                deprecated: true
            ),
            suite("AES128-GCM-SHA256", "TLS_RSA_WITH_AES_128_GCM_SHA256", B.kRSA, B.aRSADecrypt, B.aes128GCM, B.aead, tls12: true),
            suite("AES256-GCM-SHA384", "TLS_RSA_WITH_AES_256_GCM_SHA384", B.kRSA, B.aRSADecrypt, B.aes256GCM, B.aead, tls12: true),
            suite("AES128-SHA", "TLS_RSA_WITH_AES_128_CBC_SHA", B.kRSA, B.aRSADecrypt, B.aes128, B.sha1, tls12: false),
            suite("PSK-AES128-CBC-SHA", "TLS_PSK_WITH_AES_128_CBC_SHA", B.kPSK, B.aPSK, B.aes128, B.sha1, tls12: false),
            suite("AES256-SHA", "TLS_RSA_WITH_AES_256_CBC_SHA", B.kRSA, B.aRSADecrypt, B.aes256, B.sha1, tls12: false),
            suite("PSK-AES256-CBC-SHA", "TLS_PSK_WITH_AES_256_CBC_SHA", B.kPSK, B.aPSK, B.aes256, B.sha1, tls12: false),
            suite("DES-CBC3-SHA", "TLS_RSA_WITH_3DES_EDE_CBC_SHA", B.kRSA, B.aRSADecrypt, B.des3, B.sha1, tls12: false, deprecated: true),
        ]
    }()

    /// A selection by algorithm, as BoringSSL's `CIPHER_ALIAS`.
    private struct Alias {
        var keyExchange: UInt32 = ~0
        var authentication: UInt32 = ~0
        var encryption: UInt32 = ~0
        var mac: UInt32 = ~0
        var minimumVersion: UInt16 = 0
        var includesDeprecated = false

        func matches(_ suite: Suite) -> Bool {
            keyExchange & suite.keyExchange != 0 && authentication & suite.authentication != 0 && encryption & suite.encryption != 0
                && mac & suite.mac != 0 && (minimumVersion == 0 || minimumVersion == suite.minimumVersion)
                && (includesDeprecated || !suite.deprecated)
        }
    }

    private static let aliases: [String: Alias] = {
        typealias B = Bits
        let aes = B.aes128 | B.aes256 | B.aes128GCM | B.aes256GCM
        return [
            "ALL": Alias(),
            "kRSA": Alias(keyExchange: B.kRSA), "kECDHE": Alias(keyExchange: B.kECDHE), "kEECDH": Alias(keyExchange: B.kECDHE),
            "ECDH": Alias(keyExchange: B.kECDHE), "kPSK": Alias(keyExchange: B.kPSK),
            "aRSA": Alias(authentication: B.aRSASign | B.aRSADecrypt), "aECDSA": Alias(authentication: B.aECDSA),
            "ECDSA": Alias(authentication: B.aECDSA), "aPSK": Alias(authentication: B.aPSK),
            "ECDHE": Alias(keyExchange: B.kECDHE), "EECDH": Alias(keyExchange: B.kECDHE),
            "RSA": Alias(keyExchange: B.kRSA, authentication: B.aRSASign | B.aRSADecrypt),
            "PSK": Alias(keyExchange: B.kPSK, authentication: B.aPSK),
            "3DES": Alias(encryption: B.des3, includesDeprecated: true),
            "AES128": Alias(encryption: B.aes128 | B.aes128GCM), "AES256": Alias(encryption: B.aes256 | B.aes256GCM),
            "AES": Alias(encryption: aes), "AESGCM": Alias(encryption: B.aes128GCM | B.aes256GCM), "CHACHA20": Alias(encryption: B.chacha),
            "SHA1": Alias(mac: B.sha1), "SHA": Alias(mac: B.sha1),
            "SSLv3": Alias(minimumVersion: B.ssl3), "TLSv1": Alias(minimumVersion: B.ssl3), "TLSv1.2": Alias(minimumVersion: B.tls12),
            "HIGH": Alias(), "FIPS": Alias(),
        ]
    }()

    // MARK: Evaluation

    /// The ordered list of suites and which are on, as BoringSSL's linked list.
    private struct Evaluation {
        var order = Array(TLSCipherList.table.indices)
        var active: Set<Int> = []
        var unknown: [String] = []

        private enum Rule { case add, delete, kill, order, special }

        mutating func process(_ text: Substring) throws(Error) {
            let characters = Array(text)
            var index = 0
            func isWordCharacter(_ character: Character) -> Bool {
                character.isASCII && (character.isLetter || character.isNumber || "-._".contains(character))
            }
            while index < characters.count {
                let first = characters[index]
                let rule: Rule
                switch first {
                case "-": rule = .delete
                case "+": rule = .order
                case "!": rule = .kill
                case "@": rule = .special
                case "[": throw Error(description: "cipher preference groups ([...]) are not supported")
                default: rule = .add
                }
                if rule != .add { index += 1 }
                if ":, ;".contains(first) {
                    index += 1
                    continue
                }
                var alias = Alias()
                alias.includesDeprecated = rule != .add
                var exact: Int?
                var multipart = false
                var skip = false
                var word = ""
                while true {
                    let start = index
                    while index < characters.count, isWordCharacter(characters[index]) { index += 1 }
                    word = String(characters[start..<index])
                    guard !word.isEmpty else {
                        let found = index < characters.count ? "\"\(characters[index])\"" : "the end"
                        throw Error(description: "unexpected \(found) in the cipher list")
                    }
                    if rule == .special { break }
                    let next = index < characters.count ? characters[index] : nil
                    if !multipart, next != "+",
                        let match = TLSCipherList.table.firstIndex(where: { $0.openSSLName == word || $0.standardName == word })
                    {
                        exact = match
                    } else if let found = TLSCipherList.aliases[word] {
                        alias.keyExchange &= found.keyExchange
                        alias.authentication &= found.authentication
                        alias.encryption &= found.encryption
                        alias.mac &= found.mac
                        alias.includesDeprecated = alias.includesDeprecated || found.includesDeprecated
                        if alias.minimumVersion != 0 && alias.minimumVersion != found.minimumVersion {
                            skip = true
                        } else {
                            alias.minimumVersion = found.minimumVersion
                        }
                    } else {
                        skip = true
                        // Excluding what does not exist is harmless; asking for it is worth a warning.
                        if rule == .add { unknown.append(word) }
                    }
                    guard next == "+" else { break }
                    index += 1
                    multipart = true
                }
                if rule == .special {
                    guard word == "STRENGTH" else { throw Error(description: "@\(word) is not supported (only @STRENGTH)") }
                    sortByStrength()
                    while index < characters.count, !":, ;".contains(characters[index]) { index += 1 }
                } else if !skip {
                    apply(rule, exact: exact, alias: alias)
                }
            }
        }

        private mutating func apply(_ rule: Rule, exact: Int?, alias: Alias) {
            apply(rule) { suite in
                if let exact { return suite == exact }
                return alias.matches(TLSCipherList.table[suite])
            }
        }

        private mutating func apply(_ rule: Rule, where matches: (Int) -> Bool) {
            let visit = rule == .delete ? Array(order.reversed()) : order
            for suite in visit where matches(suite) {
                switch rule {
                case .add:
                    guard !active.contains(suite) else { continue }
                    order.removeAll { $0 == suite }
                    order.append(suite)
                    active.insert(suite)
                case .order:
                    guard active.contains(suite) else { continue }
                    order.removeAll { $0 == suite }
                    order.append(suite)
                case .delete:
                    guard active.contains(suite) else { continue }
                    order.removeAll { $0 == suite }
                    order.insert(suite, at: 0)
                    active.remove(suite)
                case .kill:
                    order.removeAll { $0 == suite }
                    active.remove(suite)
                case .special:
                    break
                }
            }
        }

        /// `@STRENGTH`: the suites on, strongest first, keeping their order otherwise.
        private mutating func sortByStrength() {
            let strengths = Set(active.map { TLSCipherList.table[$0].strengthBits }).sorted(by: >)
            for bits in strengths {
                apply(.order) { TLSCipherList.table[$0].strengthBits == bits }
            }
        }
    }
}
