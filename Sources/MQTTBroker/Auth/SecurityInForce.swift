import Atomics
import NIOConcurrencyHelpers

/// The password files, ACLs and JWT keys in force, replaced whole on reload.
final class SecurityInForce: Sendable {
    private let policyBox = NIOLockedValueBox<SecurityPolicy>(.open)
    /// Read on every message: whether any ACL must be consulted.
    private let aclActive = ManagedAtomic<Bool>(false)

    var policy: SecurityPolicy { policyBox.withLockedValue { $0 } }

    /// Whether ACLs are in force, so messages must be checked (one relaxed atomic load).
    var checksAccess: Bool { aclActive.load(ordering: .relaxed) }

    func replace(with policy: SecurityPolicy) {
        policyBox.withLockedValue { $0 = policy }
        aclActive.store(policy.hasACL, ordering: .relaxed)
    }
}
