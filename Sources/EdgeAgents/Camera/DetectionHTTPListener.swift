import Foundation
import LPRModel
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix

/// `--listen HOST:PORT`: the AI engine posts detections over local HTTP.
///
/// - `POST /detections` with one detection (a JSON object), an array of them, or JSON lines:
///   `202 Accepted` once every detection is journaled (it survives a crash of the agent from
///   then on), with `{"results": [{"message_id", "status": "accepted"|"pending"|"filtered", ...}]}`
///   (for a single object, that result alone); `422` with `{"errors": [{"path", "reason"}]}` when
///   a detection is invalid (the valid ones of a batch are still taken); `400` for a body that
///   is not JSON; `413` above 8 MiB.
/// - `GET /status`: the agent's status (what the `get_status` command answers).
///
/// NIO's HTTP/1.1 server pipeline on `NIOAsyncChannel`, one task per connection.
public final class DetectionHTTPListener: Sendable {
    public static let maximumBody = 8 << 20

    private let channel: NIOAsyncChannel<NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>, Never>
    private let agent: CameraAgent
    private let logger: Logger
    /// The port it listens on (useful when bound to port 0).
    public let port: Int

    private init(
        channel: NIOAsyncChannel<NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>, Never>,
        agent: CameraAgent,
        logger: Logger
    ) {
        self.channel = channel
        self.agent = agent
        self.logger = logger
        self.port = channel.channel.localAddress?.port ?? 0
    }

    /// Binds `host:port` (port 0 picks a free one); call ``run()`` to serve.
    public static func bind(host: String, port: Int, agent: CameraAgent, logger: Logger) async throws -> DetectionHTTPListener {
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .bind(host: host, port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    return try NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>(wrappingChannelSynchronously: channel)
                }
            }
        return DetectionHTTPListener(channel: channel, agent: agent, logger: logger)
    }

    /// Serves connections until the task is cancelled.
    public func run() async {
        do {
            try await withThrowingDiscardingTaskGroup { group in
                try await channel.executeThenClose { inbound in
                    for try await connection in inbound {
                        group.addTask { await self.serve(connection) }
                    }
                }
            }
        } catch {
            if !Task.isCancelled { logger.error("the HTTP listener stopped: \(error)") }
        }
    }

    private func serve(_ connection: NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>) async {
        do {
            try await connection.executeThenClose { inbound, outbound in
                var head: HTTPRequestHead?
                var body: [UInt8] = []
                var tooLarge = false
                for try await part in inbound {
                    switch part {
                    case .head(let requestHead):
                        head = requestHead
                        body = []
                        tooLarge = false
                    case .body(let buffer):
                        if body.count + buffer.readableBytes > Self.maximumBody {
                            tooLarge = true
                        } else {
                            body += buffer.readableBytesView
                        }
                    case .end:
                        guard let requestHead = head else { continue }
                        let (status, document) =
                            tooLarge
                            ? (HTTPResponseStatus.payloadTooLarge, ["error": .string("the body is larger than \(Self.maximumBody) bytes")])
                            : await respond(to: requestHead, body: body)
                        let bytes = JSONValue.object(document).jsonBytes + [0x0A]
                        var headers = HTTPHeaders()
                        headers.add(name: "Content-Type", value: "application/json")
                        headers.add(name: "Content-Length", value: "\(bytes.count)")
                        let keepAlive = requestHead.isKeepAlive && !tooLarge
                        headers.add(name: "Connection", value: keepAlive ? "keep-alive" : "close")
                        try await outbound.write(.head(HTTPResponseHead(version: requestHead.version, status: status, headers: headers)))
                        try await outbound.write(.body(.byteBuffer(ByteBuffer(bytes: bytes))))
                        try await outbound.write(.end(nil))
                        head = nil
                        body = []
                        if !keepAlive { return }
                    }
                }
            }
        } catch {
            logger.debug("an HTTP connection ended: \(error)")
        }
    }

    private func respond(to head: HTTPRequestHead, body: [UInt8]) async -> (HTTPResponseStatus, JSONObject) {
        let path = head.uri.split(separator: "?").first.map(String.init) ?? head.uri
        switch (head.method, path) {
        case (.POST, "/detections"), (.POST, "/detections/"):
            return await receive(body)
        case (.GET, "/status"):
            return (.ok, await agent.statusDocument())
        case (_, "/detections"), (_, "/status"):
            return (.methodNotAllowed, ["error": .string("\(head.method) is not allowed on \(path)")])
        default:
            return (.notFound, ["error": .string("no such endpoint: POST /detections, GET /status")])
        }
    }

    private func receive(_ body: [UInt8]) async -> (HTTPResponseStatus, JSONObject) {
        let documents: [JSONValue]
        var single = false
        if let value = try? JSONValue.parse(body) {
            switch value {
            case .object:
                documents = [value]
                single = true
            case .array(let elements):
                documents = elements
            default:
                return (.badRequest, ["error": .string("expected a detection (a JSON object), an array of them, or JSON lines")])
            }
        } else {
            var lines: [JSONValue] = []
            for line in body.split(separator: 0x0A) where !line.allSatisfy({ $0 == 0x20 || $0 == 0x0D || $0 == 0x09 }) {
                do {
                    lines.append(try JSONValue.parse(Array(line)))
                } catch {
                    return (.badRequest, ["error": .string("line \(lines.count + 1): \(error.description)")])
                }
            }
            guard !lines.isEmpty else { return (.badRequest, ["error": .string("the body is empty")]) }
            documents = lines
        }
        var results: [JSONValue] = []
        var invalid = false
        var failed = false
        var objects: [(position: Int, object: JSONObject)] = []
        for (index, document) in documents.enumerated() {
            if let object = document.objectValue { objects.append((index, object)) }
        }
        let outcomes = await agent.submit(contentsOf: objects.map(\.object))
        var outcomeByPosition: [Int: (JSONObject, Result<CameraAgent.SubmitOutcome, any Error>)] = [:]
        for (entry, outcome) in zip(objects, outcomes) { outcomeByPosition[entry.position] = (entry.object, outcome) }
        for index in documents.indices {
            guard let (object, outcome) = outcomeByPosition[index] else {
                invalid = true
                results.append(["status": "invalid", "errors": [["path": .string("[\(index)]"), "reason": "expected an object"]]])
                continue
            }
            switch outcome {
            case .success(.accepted(let id)):
                results.append(["message_id": .string(id), "status": "accepted"])
            case .success(.alreadyPending(let id)):
                results.append(["message_id": .string(id), "status": "pending"])
            case .success(.filtered(let id, let reason)):
                results.append(["message_id": .string(id), "status": "filtered", "reason": .string(reason)])
            case .failure(let error as MessageValidationError):
                invalid = true
                var result: JSONObject = ["status": "invalid", "errors": .array(error.errors.map(\.json))]
                if let id = Detection.messageID(in: object) { result["message_id"] = .string(id) }
                results.append(.object(result))
            case .failure(let error):
                failed = true
                logger.error("cannot take a posted detection: \(error)")
                results.append(["status": "error", "error": .string("\(error)")])
            }
        }
        let status: HTTPResponseStatus = failed ? .serviceUnavailable : invalid ? .unprocessableEntity : .accepted
        if single, let result = results.first?.objectValue { return (status, result) }
        return (status, ["results": .array(results)])
    }
}
