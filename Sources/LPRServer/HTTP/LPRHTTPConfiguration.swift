import Hummingbird
import NIOCore

/// How the LPR server's HTTP side (REST API, live feed, dashboard) is served.
public struct LPRHTTPConfiguration: Sendable {
    /// Where to listen; port 0 picks a free one.
    public var host: String
    public var port: Int
    /// The tokens `/api` accepts.
    public var tokens: [APIToken]
    /// The Prometheus text `GET /metrics` serves (the server's metrics, and the broker's when
    /// it runs in the same process).
    public var metrics: @Sendable () async -> String
    /// Called once the port is open (after the server is ready), with the address bound.
    public var onServerRunning: @Sendable (SocketAddress?) async -> Void
    /// How often the live feed sends a comment line to keep idle connections open.
    public var eventStreamHeartbeat: Duration

    /// - Parameters:
    ///   - host: the address to listen on (the dashboard's default is `127.0.0.1:5000`).
    ///   - tokens: who may use `/api`.
    public init(host: String = "127.0.0.1", port: Int = 5000, tokens: [APIToken]) {
        self.host = host
        self.port = port
        self.tokens = tokens
        self.metrics = { "" }
        self.onServerRunning = { _ in }
        self.eventStreamHeartbeat = .seconds(15)
    }
}
