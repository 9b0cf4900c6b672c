import Foundation
import LPRModel
import Logging
import MQTTClient
import MQTTCore
import NIOCore
import ServiceLifecycle

/// `databus up --demo N`: N simulated cameras so the dashboard is alive at once. Each connects
/// like a real camera (its own client, a retained `online` status with `offline` as its will),
/// publishes seed-format detections every few seconds and health every 10 s, answers `control`
/// with `control/response`, `health/request` with health, and reports each `config/update` it gets.
///
/// Small on purpose and in one file: the camera agent (`databus camera --simulate`) replaces it.
struct DemoCameras: Service {
    let count: Int
    let host: String
    let port: Int
    let username: String?
    let password: String?
    let logger: Logger

    /// Plates the demo reads; `DEMO42` is on the watch-list the demo sets up.
    static let plates = ["ABC1234", "KX19ABC", "7GHJ821", "TH4521", "BKK9001", "ZZ10EE", "DEMO42", "CN8812", "1KT5567", "PB220X"]
    static let watchedPlate = "DEMO42"
    static let vehicles: [(String, String, String, String)] = [
        ("car", "sedan", "Toyota", "Camry"), ("car", "hatchback", "Honda", "Jazz"), ("truck", "pickup", "Isuzu", "D-Max"),
        ("car", "suv", "Mazda", "CX-5"), ("motorcycle", "scooter", "Yamaha", "NMAX"),
    ]
    static let colors = ["white", "black", "silver", "red", "blue", "grey"]

    func run() async throws {
        await withDiscardingTaskGroup { group in
            for index in 1...max(1, count) {
                group.addTask { await self.runCamera(index) }
            }
        }
    }

    private func runCamera(_ index: Int) async {
        let camera = String(format: "DEMO%02d", index)
        let checkpoint = "CP\(String(format: "%02d", (index + 1) / 2))"
        var configuration = MQTTClient.Configuration(host: host, port: port, clientIdentifier: "demo-\(camera)")
        if let username { configuration.username = username }
        if let password { configuration.password = Array(password.utf8) }
        configuration.will = ConnectPacket.Will(
            topic: LPRTopic.status(camera: camera).name,
            payload: ByteBuffer(string: "offline"),
            qos: .atLeastOnce,
            retain: true
        )
        let client = MQTTClient(configuration: configuration, logger: logger)
        let started = Date()
        do {
            try await client.connect()
            let incoming = client.messages
            let topics: [LPRTopic] = [.control(camera: camera), .configUpdate(camera: camera), .healthRequest(camera: camera)]
            _ = try await client.subscribe(topics.map { Subscription(topicFilter: $0.name, options: SubscriptionOptions(qos: .exactlyOnce)) })
            try await client.publish(topic: LPRTopic.status(camera: camera).name, payload: "online", qos: .atLeastOnce, retain: true)
            try await cancelWhenGracefulShutdown {
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask {
                        for await message in incoming { try await answer(message, camera: camera, client: client, started: started) }
                    }
                    group.addTask {
                        var nextHealth = Date()
                        while !Task.isCancelled {
                            if Date() >= nextHealth {
                                try await publishHealth(camera: camera, client: client, started: started)
                                nextHealth = Date().addingTimeInterval(10)
                            }
                            try await publishDetection(camera: camera, checkpoint: checkpoint, client: client)
                            try await Task.sleep(for: .milliseconds(Int.random(in: 1500...5000)))
                        }
                    }
                    try await group.next()
                    group.cancelAll()
                }
            }
        } catch is CancellationError {
        } catch {
            logger.warning("demo camera stopped", metadata: ["lpr.camera_id": "\(camera)", "lpr.error": "\(error)"])
        }
        _ = try? await client.publish(topic: LPRTopic.status(camera: camera).name, payload: "offline", qos: .atLeastOnce, retain: true)
        await client.disconnect()
    }

    private func publishDetection(camera: String, checkpoint: String, client: MQTTClient) async throws {
        let plate = Self.plates.randomElement()!
        let vehicle = Self.vehicles.randomElement()!
        let confidence = Double(Int.random(in: 78...99)) / 100
        let data = DetectionData(
            confidenceScore: confidence,
            processingTimeMs: Double(Int.random(in: 60...220)),
            vehicles: [
                Vehicle(
                    vehicleIndex: 0,
                    bbox: [100, 100, 420, 330],
                    confidence: confidence,
                    vehicleClass: vehicle.0,
                    vehicleType: vehicle.1,
                    color: Self.colors.randomElement(),
                    brand: vehicle.2,
                    model: vehicle.3,
                    year: Int.random(in: 2008...2025)
                )
            ],
            plates: [
                Plate(
                    plateIndex: 0,
                    plateNumber: plate,
                    bbox: [180, 260, 300, 300],
                    confidence: (confidence * 100 - 2).rounded() / 100,
                    plateType: "standard",
                    country: "TH",
                    province: "Bangkok",
                    isValid: true
                )
            ]
        )
        let detection = Detection(
            messageID: UUID().uuidString.lowercased(),
            timestamp: Date(),
            cameraID: camera,
            checkpointID: checkpoint,
            data: data,
            metadata: ["image_path": .string("/storage/images/\(camera)_demo.jpg"), "weather": "clear", "lighting": "daylight"]
        )
        try await client.publish(
            topic: LPRTopic.detection(camera: camera).name,
            payload: ByteBuffer(bytes: JSONValue.object(detection.json).jsonBytes),
            qos: .atLeastOnce
        )
    }

    private func publishHealth(camera: String, client: MQTTClient, started: Date) async throws {
        let uptime = Int(Date().timeIntervalSince(started)) + 86_400
        let health: JSONObject = [
            "message_id": .string(UUID().uuidString.lowercased()),
            "timestamp": .timestamp(Date()),
            "camera_id": .string(camera),
            "health_status": "healthy",
            "health_details": [
                "cpu_usage": .double(Double(Int.random(in: 180...650)) / 10),
                "memory_usage": .double(Double(Int.random(in: 350...720)) / 10),
                "disk_usage": .double(Double(Int.random(in: 200...300)) / 10),
                "network_status": "connected",
                "camera_status": "active",
                "uptime_seconds": .int(uptime),
                "temperature": .double(Double(Int.random(in: 380...560)) / 10),
            ],
            "alerts": [],
        ]
        try await client.publish(
            topic: LPRTopic.health(camera: camera).name,
            payload: ByteBuffer(bytes: JSONValue.object(health).jsonBytes),
            qos: .atMostOnce,
            retain: true
        )
    }

    private func answer(_ message: MQTTMessage, camera: String, client: MQTTClient, started: Date) async throws {
        let topic = LPRTopic(parsing: message.topic)
        if case .healthRequest? = topic {
            try await publishHealth(camera: camera, client: client, started: started)
            return
        }
        guard let json = try? JSONObject.parse(message.payload.readableBytesView) else { return }
        switch topic {
        case .control?:
            guard let command = try? ControlCommand(validating: json, topicCamera: camera) else { return }
            let known = ["restart", "restart_camera", "request_health", "snapshot", "reboot"]
            let status: ControlResponse.Status = known.contains(command.command) ? .ok : .unsupported
            var result: JSONObject = ["command": .string(command.command)]
            if status == .ok {
                result["done_at"] = .timestamp(Date())
            } else {
                result["error"] = .string("the demo camera knows \(known.joined(separator: ", "))")
            }
            var properties: Properties = []
            if let correlation = message.properties.correlationData { properties = [.correlationData(correlation)] }
            let response = ControlResponse(messageID: command.messageID, status: status, result: result, timestamp: Date())
            try await client.publish(
                topic: LPRTopic.controlResponse(camera: camera).name,
                payload: ByteBuffer(bytes: JSONValue.object(response.json).jsonBytes),
                qos: .exactlyOnce,
                properties: properties
            )
            if command.command == "request_health" { try await publishHealth(camera: camera, client: client, started: started) }
        case .configUpdate?:
            guard let desired = try? CameraConfiguration(validating: json, topicCamera: camera) else { return }
            let applied = CameraConfiguration(
                messageID: UUID().uuidString.lowercased(),
                timestamp: Date(),
                cameraID: camera,
                configType: desired.configType,
                configData: desired.configData
            )
            try await client.publish(
                topic: LPRTopic.config(camera: camera).name,
                payload: ByteBuffer(bytes: JSONValue.object(applied.json).jsonBytes),
                qos: .exactlyOnce,
                retain: true
            )
        default:
            return
        }
    }
}
