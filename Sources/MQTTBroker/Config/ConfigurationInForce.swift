import Atomics
import NIOConcurrencyHelpers

/// One configuration, immutable, shared by every connection opened while it was in force.
final class ConfigurationSnapshot: Sendable {
    let value: BrokerConfiguration
    init(_ value: BrokerConfiguration) { self.value = value }
}

/// The configuration the broker runs with; SIGHUP may replace it. Connections read it when
/// they open and keep what they need per message as fields of their own.
final class ConfigurationInForce: Sendable {
    private let box: NIOLockedValueBox<ConfigurationSnapshot>
    /// Read on every retained message; kept apart so that routing takes no lock for it.
    private let retainAvailableFlag: ManagedAtomic<Bool>

    init(_ configuration: BrokerConfiguration) {
        box = NIOLockedValueBox(ConfigurationSnapshot(configuration))
        retainAvailableFlag = ManagedAtomic(configuration.retainAvailable)
    }

    /// The configuration in force.
    var value: BrokerConfiguration { box.withLockedValue { $0.value } }

    /// The configuration in force, shared by reference: every connection keeps one pointer to
    /// it instead of a copy of its own (idle connections are many on a small machine).
    var snapshot: ConfigurationSnapshot { box.withLockedValue { $0 } }

    var retainAvailable: Bool { retainAvailableFlag.load(ordering: .relaxed) }

    /// Puts `configuration` in force for connections opened from now on.
    func replace(with configuration: BrokerConfiguration) {
        box.withLockedValue { $0 = ConfigurationSnapshot(configuration) }
        retainAvailableFlag.store(configuration.retainAvailable, ordering: .relaxed)
    }

    /// The per-session bounds the configuration sets.
    var sessionLimits: Session.Limits { Session.Limits(value) }
}

extension Session.Limits {
    init(_ configuration: BrokerConfiguration) {
        self.init(
            maxInflight: configuration.maxInflightMessages == 0 ? 65_535 : configuration.maxInflightMessages,
            maxQueuedMessages: configuration.maxQueuedMessages,
            maxQueuedBytes: configuration.maxQueuedBytes,
            backpressure: configuration.backpressure
        )
    }
}
