import MQTTCore

extension ConnectionStateMachine {
    /// DISCONNECT from the client: 5.0 may change the session expiry (but not from 0) and keep
    /// the will with 0x04; otherwise the will is discarded.
    mutating func disconnectReceived(_ disconnect: DisconnectPacket) -> ReadAction {
        guard var connected else { return .ignore }
        var newExpiry: UInt32?
        if connected.version == .v5 {
            if let expiry = disconnect.properties.sessionExpiryInterval {
                guard connected.sessionExpiry != 0 || expiry == 0 else {
                    return protocolError("DISCONNECT sets a session expiry after CONNECT set 0")
                }
                connected.sessionExpiry = expiry
                newExpiry = expiry
            }
            if disconnect.reasonCode != .disconnectWithWillMessage { connected.will = nil }
        } else {
            connected.will = nil
        }
        connected.cleanDisconnect = true
        self.connected = connected
        phase = .closing
        return .disconnected(sessionExpiry: newExpiry)
    }

    /// What happens to the will and the session when a connection ends.
    struct Ending: Equatable {
        enum Will: Equatable {
            case none
            case publishNow
            /// 5.0 will delay: published then unless the client reconnects first.
            case publishAfter(seconds: UInt32)
        }

        enum SessionFate: Equatable {
            /// Another connection holds the session, or it lasts for ever.
            case keep
            case end
            case expireAfter(seconds: UInt32)
        }

        var will: Will
        var session: SessionFate
    }

    /// Decides the will and the session's fate when the connection ends.
    /// - Parameters:
    ///   - stillOwner: the session is still this connection's (no takeover).
    ///   - sessionEnded: the session is over (a clean-start takeover replaced it).
    static func ending(_ connected: Connected, stillOwner: Bool, sessionEnded: Bool) -> Ending {
        var will = Ending.Will.none
        if let message = connected.will {
            let delay = connected.version == .v5 ? message.properties.willDelayInterval ?? 0 : 0
            if !stillOwner && sessionEnded {
                // Taken over with a clean start: the session ended, so the will goes out now.
                will = .publishNow
            } else if delay == 0 || connected.sessionExpiry == 0 {
                if delay == 0 || stillOwner { will = .publishNow }
            } else if stillOwner {
                will = .publishAfter(seconds: delay)
            }
        }
        guard stillOwner else { return Ending(will: will, session: .keep) }
        switch connected.sessionExpiry {
        case 0: return Ending(will: will, session: .end)
        case UInt32.max: return Ending(will: will, session: .keep)
        default: return Ending(will: will, session: .expireAfter(seconds: connected.sessionExpiry))
        }
    }
}

extension ConnectionStateMachine.Connected {
    /// The will as the message it becomes, without its delay property.
    var willMessage: ApplicationMessage? {
        guard let will else { return nil }
        var properties = will.properties
        properties.removeAll(.willDelayInterval)
        return ApplicationMessage(
            topic: will.topic,
            payload: will.payload,
            qos: will.qos,
            retain: will.retain,
            properties: properties,
            publisherID: clientID
        )
    }
}
