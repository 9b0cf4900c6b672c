import Foundation
import Hummingbird
import LPRModel

extension APIRoutes {
    /// `GET /api/cameras`: every known camera, by id.
    func listCameras() async throws -> Response {
        var items: [JSONValue] = []
        for record in try await server.repository.cameras() where record.isKnown {
            items.append(.object(try await cameraJSON(record)))
        }
        return Response.json(["items": .array(items)])
    }

    /// `GET /api/cameras/{id}`.
    func camera(_ context: BasicRequestContext) async throws -> Response {
        Response.json(try await cameraJSON(knownCamera(context)))
    }

    /// `PUT /api/cameras/{id}/config` with `{"config_type", "config_data"}`: publishes
    /// `config/update` (retained, QoS 2) and answers 202 with its `message_id`. Setting a
    /// configuration makes a camera known, so a camera can be set up before it first connects.
    func setConfiguration(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        let camera = try cameraID(context)
        let body = try await request.jsonObject()
        var reader = FieldReader()
        let configType = reader.string(body, "config_type")
        let configData = reader.object(body, "config_data", required: true)
        if let configData { CameraConfiguration.checkConfigData(configData, with: &reader) }
        do { try reader.check() } catch { throw APIError.invalid(error) }
        let message = try await server.setConfiguration(camera: camera, configType: configType!, configData: configData!)
        return Response.json(
            ["message_id": .string(message.messageID), "camera_id": .string(camera), "config": .object(message.json)],
            status: .accepted
        )
    }

    /// `POST /api/cameras/{id}/control` with `{"command", "parameters", "priority",
    /// "timeout_seconds"}`: publishes `control` and waits for the camera's `control/response`:
    /// 200 with the answer as the camera sent it, or 504 `{"error": "timeout", "message_id"}`.
    func sendCommand(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        let record = try await knownCamera(context)
        let body = try await request.jsonObject()
        var reader = FieldReader()
        let command = reader.string(body, "command")
        let parameters = reader.object(body, "parameters") ?? [:]
        let priority = reader.oneOf(body, "priority", ControlCommand.Priority.allCases.map(\.rawValue), required: false)
        let timeout = reader.number(body, "timeout_seconds") ?? 10
        let longest = server.configuration.maximumCommandTimeout.seconds
        if !(timeout > 0 && timeout <= longest) {
            reader.fail("timeout_seconds", "must be more than 0 and at most \(Int(longest))")
        }
        do { try reader.check() } catch { throw APIError.invalid(error) }
        let outcome = try await server.sendCommand(
            camera: record.cameraID,
            command: command!,
            parameters: parameters,
            priority: priority.flatMap(ControlCommand.Priority.init(rawValue:)) ?? .normal,
            timeout: .milliseconds(Int64(timeout * 1000))
        )
        switch outcome {
        case .answered(let response):
            return Response.json(response.json)
        case .timedOut(let messageID):
            throw APIError(
                .gatewayTimeout,
                code: "timeout",
                message: "camera \(record.cameraID) did not answer within \(timeout) s",
                extra: ["message_id": .string(messageID)]
            )
        }
    }

    /// `POST /api/cameras/{id}/health/request`: asks the camera for a fresh health message.
    func requestHealth(_ context: BasicRequestContext) async throws -> Response {
        let record = try await knownCamera(context)
        try await server.requestHealth(camera: record.cameraID)
        return Response.json(["camera_id": .string(record.cameraID), "requested": true], status: .accepted)
    }

    // MARK: Helpers

    func cameraID(_ context: BasicRequestContext) throws -> String {
        let id = try parameter("id", context)
        guard LPRTopic.isValidIdentifier(id) else {
            throw APIError.badRequest("id", "a camera id must be non-empty without '/', '+', '#' or control characters")
        }
        return id
    }

    /// The camera the path names, or 404.
    func knownCamera(_ context: BasicRequestContext) async throws -> CameraRecord {
        let id = try cameraID(context)
        guard let record = try await server.repository.camera(id), record.isKnown else {
            throw APIError.notFound("id", "no camera \"\(id)\" is known: none of its messages came and no configuration was set for it")
        }
        return record
    }

    /// A camera as the API shows it.
    func cameraJSON(_ record: CameraRecord) async throws -> JSONObject {
        var lastDetection: JSONValue = .null
        if let id = record.lastDetectionID, let detection = try await server.repository.detection(messageID: id) {
            lastDetection = .object(detection.json)
        }
        return [
            "camera_id": .string(record.cameraID),
            "checkpoint_id": record.checkpointID.map(JSONValue.string) ?? .null,
            "online": record.online.map(JSONValue.bool) ?? .null,
            "first_seen": .time(record.firstSeen),
            "last_seen": .time(record.lastSeen),
            "health_status": record.healthStatus.map(JSONValue.string) ?? .null,
            "problems": .array(record.activeProblems.map(JSONValue.string)),
            "health": .stored(record.health),
            "config": [
                "desired": .stored(record.desiredConfig), "desired_at": .time(record.desiredAt),
                "reported": .stored(record.reportedConfig), "reported_at": .time(record.reportedAt),
            ],
            "last_detection": lastDetection,
        ]
    }
}
