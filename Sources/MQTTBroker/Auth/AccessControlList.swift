import Foundation
import MQTTCore

/// What a client may do with a topic.
public struct TopicAccess: OptionSet, Sendable, Hashable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    /// Receive messages on the topic (and subscribe to filters within it).
    public static let read = TopicAccess(rawValue: 1)
    /// Publish to the topic (including a will).
    public static let write = TopicAccess(rawValue: 2)
    public static let readWrite: TopicAccess = [.read, .write]
}

/// A mosquitto ACL file: `topic` lines before the first `user` line apply to anonymous
/// clients, `user NAME` starts that user's lines, `pattern` lines apply to every client with
/// `%c` (client id) and `%u` (username) substituted; `deny` wins over any grant.
public struct AccessControlList: Sendable, Hashable {
    /// One `topic` or `pattern` line.
    public struct Rule: Sendable, Hashable {
        /// Empty for `deny`.
        public var access: TopicAccess
        public var filter: String
    }

    public private(set) var anonymousRules: [Rule] = []
    /// Keyed by the username's bytes: two spellings of the same text are two users, as in mosquitto.
    private var userRules: [[UInt8]: [Rule]] = [:]
    public private(set) var patterns: [Rule] = []

    public init() {}

    /// Parses ACL text; `file` names it in errors.
    public init(parsing text: String, file: String = "<acl file>") throws(ConfigurationError) {
        var currentUser: String?
        for (number, rawLine) in text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).enumerated() {
            let line = rawLine.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") { continue }
            func error(_ message: String) -> ConfigurationError {
                ConfigurationError(file: file, line: number + 1, key: nil, message: message)
            }
            let keyword = line.prefix { $0 != " " && $0 != "\t" }
            let rest = line.dropFirst(keyword.count).trimmingCharacters(in: .whitespaces)
            switch keyword {
            case "user":
                guard !rest.isEmpty else { throw error("user expects a username") }
                currentUser = rest
                if userRules[Array(rest.utf8)] == nil { userRules[Array(rest.utf8)] = [] }
            case "topic", "pattern":
                let rule = try Self.rule(rest, error: error)
                if keyword == "pattern" {
                    patterns.append(rule)
                } else if let user = currentUser {
                    userRules[Array(user.utf8), default: []].append(rule)
                } else {
                    anonymousRules.append(rule)
                }
            default:
                throw error("expected topic, pattern or user, not \"\(keyword)\"")
            }
        }
    }

    /// Reads the file at `path`.
    public init(contentsOf path: String) throws(ConfigurationError) {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw ConfigurationError(file: path, line: 0, key: nil, message: "cannot read the ACL file: \(error.localizedDescription)")
        }
        try self.init(parsing: text, file: path)
    }

    private static func rule(_ text: String, error: (String) -> ConfigurationError) throws(ConfigurationError) -> Rule {
        let first = text.prefix { $0 != " " && $0 != "\t" }
        let access: TopicAccess
        var filter = text
        switch first {
        case "read": access = .read
        case "write": access = .write
        case "readwrite": access = .readWrite
        case "deny": access = []
        default: access = .readWrite
        }
        if first == "read" || first == "write" || first == "readwrite" || first == "deny" {
            filter = text.dropFirst(first.count).trimmingCharacters(in: .whitespaces)
        }
        guard !filter.isEmpty else { throw error("expects a topic filter") }
        // Patterns are checked once %c and %u are filled in; the placeholders are valid levels.
        do {
            try TopicFilter.validate(filter)
        } catch let invalid {
            throw error("\"\(filter)\" is not a valid topic filter: \(invalid)")
        }
        return Rule(access: access, filter: filter)
    }

    /// The rules that apply to one client, with its patterns filled in.
    public func access(username: String?, clientID: String) -> ClientAccess {
        var rules = username.map { userRules[Array($0.utf8)] ?? [] } ?? anonymousRules
        // A username or client id holding a wildcard gets no pattern at all, as in mosquitto.
        let wildcard = { (text: String) in text.utf8.contains(UInt8(ascii: "+")) || text.utf8.contains(UInt8(ascii: "#")) }
        if wildcard(clientID) || username.map(wildcard) == true { return ClientAccess(rules: rules) }
        for pattern in patterns {
            guard let filter = Self.substitute(pattern.filter, username: username, clientID: clientID) else { continue }
            rules.append(Rule(access: pattern.access, filter: filter))
        }
        return ClientAccess(rules: rules)
    }

    /// Fills `%c` and `%u` in levels that are exactly the placeholder, as mosquitto does; nil
    /// when the pattern needs a username the client does not have, or the value would change
    /// the filter's shape (a `/`, `+` or `#` in it).
    static func substitute(_ filter: String, username: String?, clientID: String) -> String? {
        guard filter.contains("%") else { return filter }
        var levels: [String] = []
        for level in ClientAccess.levels(filter) {
            let text = String(decoding: level, as: UTF8.self)
            switch text {
            case "%c":
                guard Self.isPlainLevel(clientID) else { return nil }
                levels.append(clientID)
            case "%u":
                guard let username, Self.isPlainLevel(username) else { return nil }
                levels.append(username)
            default:
                levels.append(text)
            }
        }
        return levels.joined(separator: "/")
    }

    /// Checked on bytes: a "/" followed by a combining mark is one Character but still a separator.
    private static func isPlainLevel(_ text: String) -> Bool {
        !text.isEmpty && !text.utf8.contains(where: { $0 == UInt8(ascii: "/") || $0 == UInt8(ascii: "+") || $0 == UInt8(ascii: "#") })
    }
}

/// One client's rules, checked on publish, subscribe and every delivery.
public struct ClientAccess: Sendable, Hashable {
    private struct Compiled: Sendable, Hashable {
        var access: TopicAccess
        /// Matched against topic names with MQTTCore's byte-wise matcher, as the router does.
        var filter: String
        /// The filter's levels, for comparing it with a subscription's filter.
        var levels: [ArraySlice<UInt8>]
    }

    /// A filter's levels as bytes, so that no two spellings of a text that Swift calls equal
    /// can slip past a rule.
    static func levels(_ text: String) -> [ArraySlice<UInt8>] {
        Array(text.utf8).split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false)
    }

    private static let plus: ArraySlice<UInt8> = [UInt8(ascii: "+")]
    private static let hash: ArraySlice<UInt8> = [UInt8(ascii: "#")]

    private let grants: [Compiled]
    private let denials: [Compiled]

    init(rules: [AccessControlList.Rule]) {
        let compiled = rules.map { Compiled(access: $0.access, filter: $0.filter, levels: Self.levels($0.filter)) }
        grants = compiled.filter { !$0.access.isEmpty }
        denials = compiled.filter { $0.access.isEmpty }
    }

    /// Whether a message on `topic` may be published (`.write`) or received (`.read`).
    public func allows(_ access: TopicAccess, topic: String) -> Bool {
        for denial in denials where TopicFilter.matches(denial.filter, name: topic) { return false }
        for grant in grants where grant.access.isSuperset(of: access) && TopicFilter.matches(grant.filter, name: topic) {
            return true
        }
        return false
    }

    /// Whether `filter` may be subscribed to: a read rule covers every topic it can match, and
    /// no deny rule covers it. Messages within it that a narrower deny rule forbids are still
    /// held back one by one at delivery.
    public func allowsSubscription(to filter: String) -> Bool {
        let levels = Self.levels(filter)
        for denial in denials where Self.filter(denial.levels, covers: levels) { return false }
        for grant in grants where grant.access.contains(.read) && Self.filter(grant.levels, covers: levels) {
            return true
        }
        return false
    }

    /// Whether every topic `inner` can match is matched by `outer`.
    static func filter(_ outer: [ArraySlice<UInt8>], covers inner: [ArraySlice<UInt8>]) -> Bool {
        if inner.first?.first == UInt8(ascii: "$"), let head = outer.first, head == plus || head == hash {
            return false
        }
        var index = 0
        while index < outer.count {
            let level = outer[index]
            if level == hash { return true }
            guard index < inner.count else { return false }
            let candidate = inner[index]
            if candidate == hash { return false }
            if level == plus {
                // "+" covers any single level, including a "+".
            } else if level != candidate {
                return false
            }
            index += 1
        }
        return index == inner.count
    }
}
