import MQTTCore

extension ConnectionStateMachine {
    /// What a SUBSCRIBE asks for, each filter checked: the subscriptions to make and the
    /// SUBACK's reason codes, in the packet's order.
    struct SubscribePlan {
        struct Subscription {
            let filter: String
            /// Set for `$share/{group}/{filter}`.
            let shared: SharedSubscription?
            let options: SubscriptionOptions

            /// Whether the retained messages of the filter go out now. Never for shared
            /// subscriptions (5.0 section 4.8.2); otherwise as the retain handling option says.
            func sendsRetained(existed: Bool) -> Bool {
                guard shared == nil else { return false }
                switch options.retainHandling {
                case .sendOnSubscribe: return true
                case .sendOnNewSubscribe: return !existed
                case .doNotSend: return false
                }
            }
        }

        enum Item {
            case subscribe(Subscription)
            case refuse(ReasonCode, why: String)
        }

        let packetIdentifier: UInt16
        /// The subscription identifier (5.0), given to every filter of the packet.
        let identifier: Int?
        let items: [Item]

        /// The SUBACK: the granted QoS of each subscription made, the refusal of each other.
        var suback: MQTTPacket {
            let codes = items.map { item -> ReasonCode in
                switch item {
                case .subscribe(let subscription): .granted(subscription.options.qos)
                case .refuse(let reason, _): reason
                }
            }
            return .suback(SubAckPacket(packetIdentifier: packetIdentifier, reasonCodes: codes))
        }
    }

    /// Checks every filter of a SUBSCRIBE: valid, allowed by the ACL, no no-local on a shared
    /// subscription (a protocol error that closes the connection). 3.1.1 subscriptions carry
    /// only a QoS.
    mutating func subscribeReceived(_ subscribe: SubscribePacket, session: some SessionRules) -> ReadAction {
        guard let connected else { return .ignore }
        let v5 = connected.version == .v5
        let access = session.access
        var items: [SubscribePlan.Item] = []
        items.reserveCapacity(subscribe.subscriptions.count)
        for subscription in subscribe.subscriptions {
            let filter = subscription.topicFilter
            let shared: SharedSubscription?
            do {
                shared = try SharedSubscription.parse(filter)
                if shared == nil { try TopicFilter.validate(filter) }
            } catch {
                items.append(.refuse(v5 ? .topicFilterInvalid : .unspecifiedError, why: "refusing subscription: \(error)"))
                continue
            }
            if let access, !access.allowsSubscription(to: shared?.filter ?? filter) {
                items.append(.refuse(v5 ? .notAuthorized : .unspecifiedError, why: "the ACL does not allow this subscription"))
                continue
            }
            // A 3.1/3.1.1 bridge's subscriptions are no-local and retain-as-published, as mosquitto
            // makes them: nothing it sends comes back, retained messages stay retained.
            let qos = subscription.options.qos
            let options =
                v5
                ? subscription.options
                : SubscriptionOptions(qos: qos, noLocal: connected.isBridge, retainAsPublished: connected.isBridge)
            if shared != nil && options.noLocal {
                return protocolError("no-local on a shared subscription")
            }
            items.append(.subscribe(.init(filter: filter, shared: shared, options: options)))
        }
        return .subscribe(
            SubscribePlan(
                packetIdentifier: subscribe.packetIdentifier,
                identifier: subscribe.properties.subscriptionIdentifiers.first,
                items: items
            )
        )
    }

    /// The UNSUBACK for `unsubscribe`, given which filters the client had: 5.0 says so per
    /// filter, 3.1.1 has no reason codes.
    func unsuback(_ unsubscribe: UnsubscribePacket, existed: [Bool]) -> MQTTPacket {
        let codes: [ReasonCode] = connected?.version == .v5 ? existed.map { $0 ? .success : .noSubscriptionExisted } : []
        return .unsuback(UnsubAckPacket(packetIdentifier: unsubscribe.packetIdentifier, reasonCodes: codes))
    }
}
