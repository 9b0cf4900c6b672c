import Foundation
import Hummingbird
import LPRModel
import NIOCore
import ServiceLifecycle

extension APIRoutes {
    /// `GET /api/events`: Server-Sent Events of what the server does from now on —
    /// `detection` (`{"watchlist_hit", "detection"}`), `alert`, `camera` (online, health,
    /// configuration reported) and `command` (answered or timed out) — with a comment line every
    /// heartbeat so proxies keep it open. It ends when the client goes or the server stops.
    func eventStream() -> Response {
        let events = server.liveEvents
        let heartbeat = configuration.eventStreamHeartbeat
        let body = ResponseBody { writer in
            let (lines, continuation) = AsyncStream.makeStream(of: ByteBuffer.self, bufferingPolicy: .bufferingNewest(1000))
            let forwarder = Task {
                for await event in events { continuation.yield(ByteBuffer(string: ServerSentEvent(event).text)) }
                continuation.finish()
            }
            let ticker = Task {
                while !Task.isCancelled {
                    try? await Task.sleep(for: heartbeat)
                    continuation.yield(ByteBuffer(string: ": keep-alive\n\n"))
                }
            }
            defer {
                forwarder.cancel()
                ticker.cancel()
                continuation.finish()
            }
            try await writer.write(ByteBuffer(string: "retry: 2000\n: connected\n\n"))
            // A server shutting down ends the stream (the feed would otherwise hold the shutdown up).
            try await withGracefulShutdownHandler {
                for await line in lines { try await writer.write(line) }
            } onGracefulShutdown: {
                continuation.finish()
            }
            try await writer.finish(nil)
        }
        return Response(
            status: .ok,
            headers: [.contentType: "text/event-stream", .cacheControl: "no-cache", .init("X-Accel-Buffering")!: "no"],
            body: body
        )
    }
}

/// One server event as an SSE message: `event: NAME` and one `data:` line of compact JSON.
struct ServerSentEvent: Sendable, Hashable {
    var name: String
    var data: JSONObject

    init(name: String, data: JSONObject) {
        self.name = name
        self.data = data
    }

    init(_ event: LPRServerEvent) {
        switch event {
        case .detection(let detection, let hit):
            self.init(name: "detection", data: ["watchlist_hit": .bool(hit), "detection": .object(detection.json)])
        case .alert(let alert):
            self.init(name: "alert", data: alert.json)
        case .cameraStatus(let camera, let online):
            self.init(name: "camera", data: ["camera_id": .string(camera), "change": "status", "online": .bool(online)])
        case .cameraHealth(let camera, let status):
            self.init(name: "camera", data: ["camera_id": .string(camera), "change": "health", "health_status": .string(status)])
        case .configurationReported(let camera):
            self.init(name: "camera", data: ["camera_id": .string(camera), "change": "config"])
        case .commandFinished(let camera, let messageID, let status):
            self.init(name: "command", data: ["camera_id": .string(camera), "message_id": .string(messageID), "status": .string(status)])
        }
    }

    /// The wire form; compact JSON never holds a line break, so one `data:` line carries it.
    var text: String { "event: \(name)\ndata: \(JSONValue.object(data).jsonText)\n\n" }
}
