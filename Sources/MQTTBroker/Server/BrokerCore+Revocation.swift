import Foundation
import Logging
import NIOCore

extension BrokerCore {
    /// Disconnects the clients of `tls` whose certificate its revocation lists (just reloaded)
    /// refuse, as a reload does for a password-file user who was removed: a 5.0 client gets
    /// DISCONNECT 0x87 (not authorized), a 3.1.1 client is closed; a connection that has not
    /// finished connecting is closed.
    /// - Returns: how many were disconnected.
    @discardableResult
    func disconnectRevokedClients(of tls: ListenerTLS, now: Date = Date()) -> Int {
        let refused = tls.refusedClients(now: now)
        guard !refused.isEmpty else { return 0 }
        let sessions = self.sessions.all
        for (client, reason) in refused {
            let session = sessions.first { $0.isConnected(through: client.channel) }
            logger.notice(
                "disconnecting: the reloaded crlfile refuses this client's certificate: \(reason)",
                metadata: ["listener": "\(tls.name)", "client": "\(session?.clientID ?? "-")", "certificate": "\(client.subject)"]
            )
            if let session {
                session.closeConnection(reason: .notAuthorized)
            } else {
                client.channel.close(promise: nil)
            }
        }
        return refused.count
    }
}
