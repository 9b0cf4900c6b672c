extension BrokerCore {
    /// Puts `policy` in force: new connections use it, and every session's access is
    /// recomputed from the ACL for the user it last logged in as; connected clients the
    /// policy no longer admits are disconnected, as mosquitto does.
    func apply(_ policy: SecurityPolicy) {
        security.replace(with: policy)
        let configuration = self.configuration.value
        for session in sessions.all {
            guard let identity = session.identity else { continue }
            // The listener as the new configuration has it (its per-listener settings may have changed).
            guard let listener = configuration.listeners.first(where: { $0.port == identity.port && $0.address == identity.address }) else {
                continue
            }
            if session.isConnected && !policy.stillAdmits(identity, on: listener, configuration) {
                logger.notice(
                    "disconnecting: the reloaded configuration no longer admits this client",
                    metadata: ["client": "\(session.clientID)", "user": "\(identity.username ?? "-")", "auth": "\(identity.method)"]
                )
                session.closeConnection(reason: .notAuthorized)
                continue
            }
            session.access = policy.access(on: listener, configuration, username: identity.username, clientID: session.clientID)
            session.dropUnreadable()
        }
    }

    /// Applies a re-read configuration: limits, behaviour and per-listener security for new
    /// connections, queue limits for existing sessions. Adding, removing or rebinding a
    /// listener (port, address, max_connections, TLS on or off) and persistence need a restart.
    /// - Returns: the settings that changed but need a restart to take effect.
    func reload(_ new: BrokerConfiguration, policy: SecurityPolicy) -> [String] {
        let old = configuration.value
        var ignored: [String] = []
        var applied = new
        if new.listeners.map(\.binding) != old.listeners.map(\.binding) {
            ignored.append("listeners")
            applied.listeners = old.listeners
        }
        if new.metricsListener != old.metricsListener {
            ignored.append("metrics_listener")
            applied.metricsListener = old.metricsListener
        }
        if new.persistence != old.persistence || new.persistenceLocation != old.persistenceLocation {
            ignored.append("persistence")
            applied.persistence = old.persistence
            applied.persistenceLocation = old.persistenceLocation
        }
        if new.bridges != old.bridges {
            // As in mosquitto, bridges are not reloaded.
            ignored.append("bridges")
            applied.bridges = old.bridges
        }
        if new.sysInterval != old.sysInterval {
            ignored.append("sys_interval")
            applied.sysInterval = old.sysInterval
        }
        if new.threads != old.threads {
            ignored.append("threads")
            applied.threads = old.threads
        }
        if new.parkIdleConnections != old.parkIdleConnections {
            ignored.append("park_idle_connections")
            applied.parkIdleConnections = old.parkIdleConnections
        }
        configuration.replace(with: applied)
        let limits = configuration.sessionLimits
        for session in sessions.all { session.updateLimits(limits) }
        apply(policy)
        return ignored
    }
}
